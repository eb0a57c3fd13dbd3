//! Every setting the binary reads through a `settings!` table, as one list: the README test
//! and the deployment facts test check against the same chain, so a table added here is
//! checked everywhere.

use aragora_config::Setting;

/// The `settings!` tables of every crate, in the order the README documents them.
pub fn all_settings() -> impl Iterator<Item = &'static Setting> {
    aragora_engine::config::SETTINGS
        .iter()
        .chain(aragora_auth::SETTINGS)
        .chain(aragora_gateway::SETTINGS)
        .chain(aragora_chaos::SETTINGS)
        .chain(aragora_chaos::experiment::scheduled::SETTINGS)
        .chain(aragora_slo::receivers::SETTINGS)
        .chain(aragora_slo::live::SETTINGS)
        .chain(aragora_slo::settings::SETTINGS)
}
