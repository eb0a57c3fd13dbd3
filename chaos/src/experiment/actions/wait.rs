//! `wait`: lets the system react; nothing to undo.

use super::act::{seconds_problem, Act, Acting, Done};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitAction {
    #[serde(deserialize_with = "crate::experiment::number_or_text")]
    pub seconds: f64,
}

impl Act for WaitAction {
    fn problems(&self) -> Vec<String> {
        seconds_problem("seconds", self.seconds)
            .into_iter()
            .collect()
    }

    fn planned_seconds(&self) -> Option<f64> {
        Some(self.seconds)
    }

    fn perform(&self) -> Acting<'_, Done> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs_f64(self.seconds)).await;
            Ok(Done::action(format!("waited {} s", self.seconds), None))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_above_zero_and_at_most_an_hour() {
        assert!(WaitAction { seconds: 0.5 }.problems().is_empty());
        assert_eq!(WaitAction { seconds: 0.5 }.planned_seconds(), Some(0.5));
        assert_eq!(WaitAction { seconds: 0.0 }.problems().len(), 1);
        assert_eq!(WaitAction { seconds: 3600.5 }.problems().len(), 1);
    }
}
