//! `DrConfig`: where backups go, how many are kept, when backups and drills run, and the RTO
//! and RPO targets a drill is judged against, and the key backups are encrypted with. Read from
//! an optional TOML file (`ARAGORA_DR_CONFIG`) and the environment, validated all at once like
//! the other components.

use crate::encryption::{BackupKey, KeySetting};
use crate::error::DrError;
use aragora_config::{ConfigProblem, Settings};
use aragora_engine::EngineConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The DR settings. `Debug` hides any secret field (an encryption key), as every config's does
/// ([`aragora_config::redact`]).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DrConfig {
    pub backup_dir: Option<PathBuf>,
    pub backup_keep_count: usize,
    pub backup_max_age_hours: u64,
    pub backup_schedule: String,
    pub drill_schedule: String,
    pub rto_target_secs: u64,
    pub rpo_target_secs: u64,
    pub dr_scheduler: bool,
    pub clock_scale: f64,
    pub clock_start: Option<String>,
    /// Shown as `***` by `Debug`; see [`KeySetting`].
    pub encryption_key: KeySetting,
}

aragora_config::settings! {
    DrConfig;
    backup_dir: ["ARAGORA_BACKUP_DIR"] "Directory for backups and their manifests; `backups` in the data directory when unset.";
    backup_keep_count: ["ARAGORA_BACKUP_KEEP_COUNT"] "Newest backups kept; older ones are deleted after each backup (the newest is never deleted).";
    backup_max_age_hours: ["ARAGORA_BACKUP_MAX_AGE_HOURS"] "Backups older than this many hours are deleted after each backup (the newest is never deleted).";
    backup_schedule: ["ARAGORA_BACKUP_SCHEDULE"] "Cron expression (sec min hour day month weekday, UTC) of scheduled backups; empty turns them off.";
    drill_schedule: ["ARAGORA_DRILL_SCHEDULE"] "Cron expression (sec min hour day month weekday, UTC) of scheduled DR drills; empty turns them off.";
    rto_target_secs: ["ARAGORA_RTO_TARGET_SECS"] "Recovery time objective: a drill whose restore-to-ready time exceeds it fails.";
    rpo_target_secs: ["ARAGORA_RPO_TARGET_SECS"] "Recovery point objective: a drill whose restored data is older than the primary's by more fails.";
    dr_scheduler: ["ARAGORA_DR_SCHEDULER"] "Run the backup and drill schedules inside `aragora serve` too (`aragora up` always runs them); replicas that do elect one scheduler leader, which alone runs them.";
    clock_scale: ["ARAGORA_DR_CLOCK_SCALE"] "Runs the schedules on a clock this many times faster than real time (1: the real clock). For drilling the schedules themselves: a week of schedule in minutes.";
    clock_start: ["ARAGORA_DR_CLOCK_START"] "With ARAGORA_DR_CLOCK_SCALE: the time (RFC 3339, UTC) the scaled clock starts from; now when unset.";
    encryption_key: ["ARAGORA_ENCRYPTION_KEY"] "Encrypts backups at rest (AES-256-GCM) when set: a 32-byte key as 64 hex characters or base64 (`openssl rand -base64 32`). Restores, verifies and drills of encrypted backups need the same key; unencrypted backups keep restoring.";
}

impl std::fmt::Debug for DrConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        aragora_config::redact::debug_redacted("DrConfig", self, f)
    }
}

impl Default for DrConfig {
    fn default() -> Self {
        Self {
            backup_dir: None,
            // Four hours of backups every 5 minutes: each is a full copy, so a day's worth (288)
            // would cost hundreds of times the database's compressed size in disk.
            backup_keep_count: 48,
            backup_max_age_hours: 7 * 24,
            // Every 5 minutes: the deployment checklist's RPO of 5 minutes (the stricter one).
            backup_schedule: "0 */5 * * * *".into(),
            // Weekly, Sunday 03:00 UTC.
            drill_schedule: "0 0 3 * * Sun".into(),
            rto_target_secs: 3600,
            rpo_target_secs: 300,
            dr_scheduler: false,
            clock_scale: 1.0,
            clock_start: None,
            encryption_key: KeySetting::default(),
        }
    }
}

impl Settings for DrConfig {
    fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.backup_keep_count == 0 {
            problems.push(ConfigProblem::new(
                "ARAGORA_BACKUP_KEEP_COUNT",
                "is 0; keep at least 1 backup",
            ));
        }
        if self.backup_max_age_hours == 0 {
            problems.push(ConfigProblem::new(
                "ARAGORA_BACKUP_MAX_AGE_HOURS",
                "is 0; give the hours a backup is kept (default 168, a week)",
            ));
        }
        for (setting, value) in [
            ("ARAGORA_RTO_TARGET_SECS", self.rto_target_secs),
            ("ARAGORA_RPO_TARGET_SECS", self.rpo_target_secs),
        ] {
            if value == 0 {
                problems.push(ConfigProblem::new(
                    setting,
                    "is 0; give a target of at least 1 second",
                ));
            }
        }
        if !(self.clock_scale >= 1.0 && self.clock_scale <= 1_000_000.0) {
            problems.push(ConfigProblem::new(
                "ARAGORA_DR_CLOCK_SCALE",
                format!(
                    "is {}; give 1 (the real clock) or a speed-up up to 1000000",
                    self.clock_scale
                ),
            ));
        }
        if let Some(start) = &self.clock_start {
            if chrono::DateTime::parse_from_rfc3339(start).is_err() {
                problems.push(ConfigProblem::new(
                    "ARAGORA_DR_CLOCK_START",
                    format!("{start:?} is not an RFC 3339 time such as 2026-11-29T02:59:00Z"),
                ));
            } else if self.clock_scale == 1.0 {
                problems.push(ConfigProblem::new(
                    "ARAGORA_DR_CLOCK_START",
                    "only applies to a scaled clock; set ARAGORA_DR_CLOCK_SCALE above 1 or unset it",
                ));
            }
        }
        for (setting, expression) in [
            ("ARAGORA_BACKUP_SCHEDULE", &self.backup_schedule),
            ("ARAGORA_DRILL_SCHEDULE", &self.drill_schedule),
        ] {
            if let Err(message) = crate::cron::check(expression) {
                problems.push(ConfigProblem::new(setting, message));
            }
        }
        if let Err(message) = self.encryption_key.key() {
            problems.push(ConfigProblem::new("ARAGORA_ENCRYPTION_KEY", message));
        }
        problems
    }
}

impl DrConfig {
    /// The key backups are encrypted with, when one is set. Validation has refused a malformed
    /// one already; this says so again rather than backing up unencrypted.
    pub fn backup_key(&self) -> Result<Option<BackupKey>, DrError> {
        self.encryption_key
            .key()
            .map_err(|message| DrError::InvalidKey(format!("ARAGORA_ENCRYPTION_KEY {message}")))
    }

    /// The backup directory: the configured one, or `backups` in the engine's data directory.
    pub fn backup_dir(&self, engine: &EngineConfig) -> PathBuf {
        self.backup_dir
            .clone()
            .unwrap_or_else(|| engine.data_dir.join("backups"))
    }

    pub fn max_age(&self) -> Duration {
        Duration::from_secs(self.backup_max_age_hours.saturating_mul(3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::encryption::MAKE_A_KEY;
    use aragora_config::env_map as env;
    use std::collections::HashMap;

    #[test]
    fn defaults_are_valid_and_keep_the_five_minute_rpo() {
        let config = DrConfig::load(None, &HashMap::new()).expect("defaults valid");
        assert_eq!(config.rpo_target_secs, 300);
        assert_eq!(config.rto_target_secs, 3600);
        assert_eq!(config.backup_schedule, "0 */5 * * * *");
    }

    #[test]
    fn bad_values_are_all_reported_with_their_setting() {
        let problems = DrConfig::load(
            None,
            &env(&[
                ("ARAGORA_BACKUP_SCHEDULE", "every five minutes"),
                ("ARAGORA_BACKUP_KEEP_COUNT", "0"),
                ("ARAGORA_RPO_TARGET_SECS", "soon"),
            ]),
        )
        .unwrap_err();
        let settings: Vec<&str> = problems.iter().map(|p| p.setting.as_str()).collect();
        assert!(
            settings.contains(&"ARAGORA_BACKUP_SCHEDULE"),
            "{problems:?}"
        );
        assert!(
            settings.contains(&"ARAGORA_BACKUP_KEEP_COUNT"),
            "{problems:?}"
        );
        assert!(
            settings.contains(&"ARAGORA_RPO_TARGET_SECS"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_malformed_encryption_key_is_a_problem_that_does_not_quote_it() {
        let value = "my-backup-passphrase";
        let problems =
            DrConfig::load(None, &env(&[("ARAGORA_ENCRYPTION_KEY", value)])).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].setting, "ARAGORA_ENCRYPTION_KEY");
        assert!(problems[0].message.contains(MAKE_A_KEY), "{problems:?}");
        assert!(!problems[0].message.contains(value), "{problems:?}");
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let config = DrConfig::load(None, &env(&[("ARAGORA_ENCRYPTION_KEY", key)])).unwrap();
        assert!(config.backup_key().unwrap().is_some());
        assert!(!format!("{config:?}").contains(key), "Debug shows the key");
        let unset = DrConfig::load(None, &env(&[("ARAGORA_ENCRYPTION_KEY", "")])).unwrap();
        assert!(unset.backup_key().unwrap().is_none());
    }

    #[test]
    fn an_empty_schedule_turns_the_job_off() {
        let config = DrConfig::load(None, &env(&[("ARAGORA_DRILL_SCHEDULE", "")])).unwrap();
        assert!(config.drill_schedule.is_empty());
    }

    #[test]
    fn every_field_is_a_documented_setting() {
        let value = toml::Value::try_from(DrConfig {
            backup_dir: Some("x".into()),
            clock_start: Some("x".into()),
            encryption_key: KeySetting::new("x"),
            ..DrConfig::default()
        })
        .unwrap();
        let keys = value.as_table().unwrap().keys().collect::<Vec<_>>();
        for key in &keys {
            assert!(
                SETTINGS.iter().any(|s| s.key == key.as_str()),
                "{key} undocumented"
            );
        }
        assert_eq!(keys.len(), SETTINGS.len());
    }
}
