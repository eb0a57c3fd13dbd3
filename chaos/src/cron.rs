//! Cron expressions as every schedule of the crate reads them: six fields with seconds, UTC,
//! parsed exactly as tokio-cron-scheduler parses them. The configs check their expressions
//! here, and the scaled clock of [`crate::schedule`] finds occurrences here, so neither needs
//! the other.

use tokio_cron_scheduler::Job;

/// Parses a cron expression exactly as tokio-cron-scheduler does (seconds required, day of
/// month and day of week both required to match).
pub(crate) fn parse(expression: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expression)
        .map_err(|err| format!("{expression:?}: {err}"))
}

/// Checks a cron expression; empty means "off".
pub fn check(expression: &str) -> Result<(), String> {
    if expression.trim().is_empty() {
        return Ok(());
    }
    Job::new_async(expression, |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|err| format!("{expression:?} is not a cron expression ({err:?}); write six fields, sec min hour day month weekday, such as \"0 */5 * * * *\" for every 5 minutes"))
}
