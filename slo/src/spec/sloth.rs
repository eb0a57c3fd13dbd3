//! Sloth `prometheus/v1` specs, and the project's own `aragora/v1` format, which is Sloth's
//! shape plus an SLO `period` and two SLI kinds (`requests`, `latency`) that say what they
//! count, so checks and promtool tests can reason about them.

use super::yaml_error;
use crate::duration::PromDuration;
use crate::model::{AlertMeta, Alerting, Labels, Sli, SliShape, Slo, SloSpec};
use crate::SloError;
use serde::{Deserialize, Serialize};

/// Sloth's default SLO period (its CLI's `--default-slo-period`).
const SLOTH_PERIOD: &str = "30d";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Own,
    Sloth,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: String,
    service: String,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    labels: Labels,
    slos: Vec<FileSlo>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileSlo {
    name: String,
    objective: f64,
    #[serde(default)]
    description: String,
    #[serde(default)]
    period: Option<String>,
    #[serde(default)]
    labels: Labels,
    sli: FileSli,
    #[serde(default)]
    alerting: FileAlerting,
}

/// Exactly one of the kinds; a struct of options because YAML writes them as keys
/// (`sli: {events: ...}`), which serde_yaml does not read as an enum.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileSli {
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Events>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<Raw>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requests: Option<Requests>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency: Option<Latency>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Events {
    error_query: String,
    total_query: String,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    error_ratio_query: String,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Requests {
    metric: String,
    #[serde(default)]
    selector: String,
    error: String,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Latency {
    metric: String,
    #[serde(default)]
    selector: String,
    threshold_ms: f64,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct FileAlerting {
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    annotations: Labels,
    #[serde(default)]
    page_alert: FileAlertMeta,
    #[serde(default)]
    ticket_alert: FileAlertMeta,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct FileAlertMeta {
    #[serde(default)]
    disable: bool,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    annotations: Labels,
}

pub fn parse(text: &str, dialect: Dialect) -> Result<SloSpec, SloError> {
    let file: File = serde_yaml::from_str(text).map_err(|err| yaml_error("the spec", err))?;
    let slos = file
        .slos
        .into_iter()
        .map(|slo| convert(slo, dialect))
        .collect::<Result<_, _>>()?;
    Ok(SloSpec {
        service: file.service,
        labels: file.labels,
        slos,
    })
}

fn convert(slo: FileSlo, dialect: Dialect) -> Result<Slo, SloError> {
    let own_only = |what: &str| {
        SloError::Format(format!(
            "SLO {:?}: {what} is not part of Sloth's prometheus/v1 format; use `version: aragora/v1` \
             to write it, or an `events` SLI",
            slo.name
        ))
    };
    if dialect == Dialect::Sloth && slo.period.is_some() {
        return Err(own_only("`period`"));
    }
    let period_text = slo.period.as_deref().unwrap_or(SLOTH_PERIOD);
    let period = PromDuration::parse(period_text)
        .map_err(|err| SloError::Format(format!("SLO {:?}: period {err}", slo.name)))?;
    let (sli, shape) = match slo.sli {
        FileSli {
            events: Some(events),
            raw: None,
            requests: None,
            latency: None,
        } => (
            Sli::Events {
                error_query: events.error_query,
                total_query: events.total_query,
            },
            None,
        ),
        FileSli {
            events: None,
            raw: Some(raw),
            requests: None,
            latency: None,
        } => (
            Sli::Raw {
                error_ratio_query: raw.error_ratio_query,
            },
            None,
        ),
        FileSli {
            requests: Some(_), ..
        }
        | FileSli {
            latency: Some(_), ..
        } if dialect == Dialect::Sloth => return Err(own_only("a `requests` or `latency` SLI")),
        FileSli {
            events: None,
            raw: None,
            requests: Some(requests),
            latency: None,
        } => shaped(SliShape::Requests {
            metric: requests.metric,
            selector: requests.selector,
            error: requests.error,
        }),
        FileSli {
            events: None,
            raw: None,
            requests: None,
            latency: Some(latency),
        } => shaped(SliShape::Latency {
            metric: latency.metric,
            selector: latency.selector,
            threshold_seconds: latency.threshold_ms / 1000.0,
        }),
        _ => {
            return Err(SloError::Format(format!(
                "SLO {:?}: give the SLI exactly one of events, raw, requests or latency",
                slo.name
            )))
        }
    };
    let alerting = slo.alerting;
    Ok(Slo {
        name: slo.name,
        description: slo.description,
        objective: slo.objective,
        period,
        labels: slo.labels,
        sli,
        shape,
        alerting: Alerting {
            name: alerting.name,
            labels: alerting.labels,
            annotations: alerting.annotations,
            page: meta(alerting.page_alert),
            ticket: meta(alerting.ticket_alert),
        },
    })
}

fn shaped(shape: SliShape) -> (Sli, Option<SliShape>) {
    (shape.to_sli(), Some(shape))
}

fn meta(file: FileAlertMeta) -> AlertMeta {
    AlertMeta {
        disable: file.disable,
        labels: file.labels,
        annotations: file.annotations,
    }
}

/// `spec` written in the project's own format (`aragora/v1`), which can say everything every
/// reader produces: reading the text back gives `spec` again (`fuzzing/` holds every format's
/// specs to that).
pub fn render_own(spec: &SloSpec) -> String {
    let file = File {
        version: super::OWN_VERSION.to_string(),
        service: spec.service.clone(),
        labels: spec.labels.clone(),
        slos: spec.slos.iter().map(file_slo).collect(),
    };
    serde_yaml::to_string(&file).expect("a spec of strings, numbers and maps serializes")
}

fn file_slo(slo: &Slo) -> FileSlo {
    let mut sli = FileSli {
        events: None,
        raw: None,
        requests: None,
        latency: None,
    };
    match (&slo.shape, &slo.sli) {
        (
            Some(SliShape::Requests {
                metric,
                selector,
                error,
            }),
            _,
        ) => {
            sli.requests = Some(Requests {
                metric: metric.clone(),
                selector: selector.clone(),
                error: error.clone(),
            })
        }
        (
            Some(SliShape::Latency {
                metric,
                selector,
                threshold_seconds,
            }),
            _,
        ) => {
            sli.latency = Some(Latency {
                metric: metric.clone(),
                selector: selector.clone(),
                threshold_ms: threshold_seconds * 1000.0,
            })
        }
        (
            None,
            Sli::Events {
                error_query,
                total_query,
            },
        ) => {
            sli.events = Some(Events {
                error_query: error_query.clone(),
                total_query: total_query.clone(),
            })
        }
        (None, Sli::Raw { error_ratio_query }) => {
            sli.raw = Some(Raw {
                error_ratio_query: error_ratio_query.clone(),
            })
        }
    }
    let meta = |meta: &AlertMeta| FileAlertMeta {
        disable: meta.disable,
        labels: meta.labels.clone(),
        annotations: meta.annotations.clone(),
    };
    FileSlo {
        name: slo.name.clone(),
        objective: slo.objective,
        description: slo.description.clone(),
        period: Some(slo.period.to_string()),
        labels: slo.labels.clone(),
        sli,
        alerting: FileAlerting {
            name: slo.alerting.name.clone(),
            labels: slo.alerting.labels.clone(),
            annotations: slo.alerting.annotations.clone(),
            page_alert: meta(&slo.alerting.page),
            ticket_alert: meta(&slo.alerting.ticket),
        },
    }
}
