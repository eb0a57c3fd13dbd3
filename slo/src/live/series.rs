//! [`Series`]: what each evaluation said about each SLO, kept for [`SERIES_KEEP_SECS`] (thinned
//! to one point a minute past the newest hour) for charts of the SLI and burn rates over time;
//! and [`SloHistory`], the `GET /api/slo/history` shape, from this series or from Prometheus.

use super::status::SloStatus;
use serde::{Serialize, Serializer};
use std::collections::{HashMap, VecDeque};

/// How far back the series reaches: the most `seconds` a history may ask for.
pub const SERIES_KEEP_SECS: u64 = 24 * 3600;

/// Past this age points are thinned to one per [`COARSE_STEP_SECS`].
const FINE_FOR_SECS: f64 = 3600.0;
const COARSE_STEP_SECS: f64 = 60.0;

/// Burn rate per window, in the SLO's window order, serialised as a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct BurnRates(pub Vec<(String, Option<f64>)>);

impl Serialize for BurnRates {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (window, rate) in &self.0 {
            map.serialize_entry(window, rate)?;
        }
        map.end()
    }
}

/// One SLO at one evaluation (or one Prometheus step).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HistoryPoint {
    /// RFC 3339.
    pub at: String,
    /// 1 minus `error_ratio`: the share of good events over the shortest alert window (5m).
    pub sli: Option<f64>,
    /// Failed share of events over the shortest alert window; null without events.
    pub error_ratio: Option<f64>,
    /// Burn rate per window (`"5m"`, ..., the period); null without events.
    #[schema(value_type = HashMap<String, Option<f64>>)]
    pub burn_rates: BurnRates,
    #[serde(skip)]
    #[schema(ignore)]
    pub at_secs: f64,
}

/// `GET /api/slo/history`'s answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SloHistory {
    pub slo: String,
    /// `live` (this process's evaluations) or `prometheus` (`query_range` on ARAGORA_PROMETHEUS_URL).
    #[schema(example = "live")]
    pub source: &'static str,
    /// Oldest first.
    pub points: Vec<HistoryPoint>,
}

/// RFC 3339 of Unix seconds.
pub(crate) fn rfc3339(at_secs: f64) -> String {
    chrono::DateTime::from_timestamp_millis((at_secs * 1000.0) as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl HistoryPoint {
    /// The point of `status` evaluated at `at_secs`: the first window (the shortest) gives
    /// the SLI.
    pub(crate) fn of(status: &SloStatus, at_secs: f64) -> Self {
        let error_ratio = status.windows.first().and_then(|w| w.error_ratio);
        Self {
            at: rfc3339(at_secs),
            sli: error_ratio.map(|r| 1.0 - r),
            error_ratio,
            burn_rates: BurnRates(
                status
                    .windows
                    .iter()
                    .map(|w| (w.window.clone(), w.burn_rate))
                    .collect(),
            ),
            at_secs,
        }
    }
}

/// Points per SLO, oldest first.
#[derive(Default)]
pub struct Series {
    points: HashMap<String, VecDeque<HistoryPoint>>,
}

impl Series {
    /// Records one evaluation at `at_secs`, then drops and thins old points.
    pub fn record(&mut self, statuses: &[SloStatus], at_secs: f64) {
        for status in statuses {
            let points = self.points.entry(status.slo.clone()).or_default();
            points.push_back(HistoryPoint::of(status, at_secs));
            while points
                .front()
                .is_some_and(|oldest| at_secs - oldest.at_secs > SERIES_KEEP_SECS as f64)
            {
                points.pop_front();
            }
            let fine_after = at_secs - FINE_FOR_SECS;
            let mut last_kept = f64::MIN;
            points.retain(|point| {
                if point.at_secs >= fine_after || point.at_secs - last_kept >= COARSE_STEP_SECS {
                    last_kept = point.at_secs;
                    true
                } else {
                    false
                }
            });
        }
    }

    /// The points of `slo` at or after `since_secs`, oldest first.
    pub fn since(&self, slo: &str, since_secs: f64) -> Vec<HistoryPoint> {
        self.points
            .get(slo)
            .into_iter()
            .flatten()
            .filter(|point| point.at_secs >= since_secs)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::status::WindowStatus;

    fn status(ratio: f64) -> SloStatus {
        SloStatus {
            sloth_id: "aragora-a".into(),
            service: "aragora".into(),
            slo: "a".into(),
            description: String::new(),
            objective_percent: 99.0,
            period: "30d".into(),
            error_budget_ratio: 0.01,
            windows: ["5m", "1h"]
                .iter()
                .map(|w| WindowStatus {
                    window: w.to_string(),
                    error_ratio: Some(ratio),
                    burn_rate: Some(ratio / 0.01),
                })
                .collect(),
            error_budget_remaining_ratio: None,
            alerts: vec![],
        }
    }

    #[test]
    fn a_point_has_the_sli_of_the_shortest_window_and_every_burn_rate() {
        let point = HistoryPoint::of(&status(0.02), 0.0);
        let json = serde_json::to_value(&point).unwrap();
        assert_eq!(json["at"], "1970-01-01T00:00:00.000Z");
        assert!((json["sli"].as_f64().unwrap() - 0.98).abs() < 1e-9);
        assert!((json["burn_rates"]["5m"].as_f64().unwrap() - 2.0).abs() < 1e-9);
        assert!(json["burn_rates"]["1h"].is_number());
        assert!(json.get("at_secs").is_none());
    }

    #[test]
    fn the_series_is_thinned_past_an_hour_and_bounded_by_its_keep() {
        let mut series = Series::default();
        for second in (0..(SERIES_KEEP_SECS + 7200)).step_by(10) {
            series.record(&[status(0.0)], second as f64);
        }
        let points = series.since("a", f64::MIN);
        let newest = points.last().unwrap().at_secs;
        assert!(newest - points[0].at_secs <= SERIES_KEEP_SECS as f64);
        let coarse = points
            .iter()
            .filter(|p| p.at_secs < newest - FINE_FOR_SECS)
            .count();
        assert!(coarse <= 23 * 60 + 2, "one a minute past an hour: {coarse}");
        assert_eq!(series.since("a", newest - 60.0).len(), 7);
        assert!(series.since("b", f64::MIN).is_empty());
    }
}
