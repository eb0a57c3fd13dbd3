//! Live SLO evaluation: for every SLO, the SLI error ratio and burn rate per window, the error
//! budget left, and whether the page and ticket burn-rate alerts would fire, computed the way
//! the generated rules compute them (the windows are the alert policy's, from
//! [`rules::sloth::alert_windows`](crate::rules::sloth::alert_windows)).
//!
//! | module | owns |
//! |---|---|
//! | `source` | [`SliSource`], where error ratios come from, and [`LiveError`]: unreachable, timed out, refused, unreadable |
//! | `prometheus_api` | [`PrometheusSource`]: `/api/v1/query` with the spec's own queries |
//! | `counters` | [`CounterSource`]: the process's own registries (`aragora up`, no Prometheus) |
//! | `matchers` | PromQL label matchers, to select counters as a query would |
//! | `history` | past counts per SLO, thinned as they age, differenced over a window |
//! | `evaluator` | [`Evaluator`]: ratios, burn rates, budget, alert state; the evaluation loop |
//! | `status` | [`SloStatus`] (the `/api/slo` shape) and the `aragora slo status` table |
//! | `series` | `Series`: each evaluation's SLI and burn rates, bounded, and [`SloHistory`] (the `/api/slo/history` shape) |
//! | `gauges` | [`SloGauges`]: the `aragora_slo_*` gauges |
//! | `alertmanager` | [`AlertmanagerSink`]: alerts posted to `/api/v2/alerts`, re-sent while firing, resolved when clear |
//! | `settings` | [`LiveSettings`]: interval, window scale, Prometheus and Alertmanager URLs |

mod alertmanager;
mod counters;
mod evaluator;
mod gauges;
mod history;
mod matchers;
mod prometheus_api;
mod series;
mod settings;
mod source;
mod status;

pub use alertmanager::AlertmanagerSink;
pub use counters::{CounterSource, JobRegistry};
pub use evaluator::{Evaluator, HistoryError};
pub use gauges::SloGauges;
pub use prometheus_api::PrometheusSource;
pub use series::{HistoryPoint, SloHistory, SERIES_KEEP_SECS};
pub use settings::{LiveSettings, SETTINGS};
pub use source::{LiveError, SliSource, TimeRange};
pub use status::{render_table, AlertStatus, SloStatus, WindowStatus};
