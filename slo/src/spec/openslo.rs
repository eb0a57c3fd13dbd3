//! OpenSLO v1: `SLO` documents with a `ratioMetric` SLI, inline (`indicator`) or in an `SLI`
//! document (`indicatorRef`). Prometheus queries carry Sloth's `{{.window}}` placeholder, as
//! Sloth's own OpenSLO support requires. Alert names are derived like for every format.

use super::yaml_error;
use crate::duration::PromDuration;
use crate::model::{Alerting, Labels, Sli, Slo, SloSpec};
use crate::SloError;
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Deserialize)]
#[serde(tag = "kind")]
enum Document {
    #[serde(rename = "SLO")]
    Slo(SloDoc),
    #[serde(rename = "SLI")]
    Sli(SliDoc),
    /// Services and other kinds carry nothing the rules need.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    name: String,
    #[serde(default)]
    labels: Labels,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SloDoc {
    metadata: Metadata,
    spec: SloDocSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SloDocSpec {
    #[serde(default)]
    description: String,
    service: String,
    indicator_ref: Option<String>,
    indicator: Option<SliDoc>,
    #[serde(default)]
    time_window: Vec<TimeWindow>,
    budgeting_method: String,
    objectives: Vec<Objective>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimeWindow {
    duration: String,
    #[serde(default)]
    is_rolling: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Objective {
    target: Option<f64>,
    target_percent: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SliDoc {
    metadata: Metadata,
    spec: SliDocSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SliDocSpec {
    ratio_metric: Option<RatioMetric>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RatioMetric {
    good: Option<MetricRef>,
    bad: Option<MetricRef>,
    total: Option<MetricRef>,
    raw: Option<MetricRef>,
    raw_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetricRef {
    metric_source: MetricSource,
}

#[derive(Deserialize)]
struct MetricSource {
    #[serde(rename = "type")]
    kind: String,
    spec: QuerySpec,
}

#[derive(Deserialize)]
struct QuerySpec {
    query: String,
}

pub fn parse(text: &str) -> Result<SloSpec, SloError> {
    let mut slos = Vec::new();
    let mut slis = HashMap::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = Document::deserialize(document)
            .map_err(|err| yaml_error(&format!("OpenSLO document {}", index + 1), err))?;
        match document {
            Document::Slo(slo) => slos.push(slo),
            Document::Sli(sli) => {
                slis.insert(sli.metadata.name.clone(), sli);
            }
            Document::Other => {}
        }
    }
    let service = match slos.first() {
        Some(slo) => slo.spec.service.clone(),
        None => {
            return Err(SloError::Format(
                "the OpenSLO file has no `kind: SLO` document; add one per objective".into(),
            ))
        }
    };
    let slos = slos
        .into_iter()
        .map(|slo| convert(slo, &service, &slis))
        .collect::<Result<_, _>>()?;
    Ok(SloSpec {
        service,
        labels: Labels::new(),
        slos,
    })
}

fn convert(doc: SloDoc, service: &str, slis: &HashMap<String, SliDoc>) -> Result<Slo, SloError> {
    let name = doc.metadata.name;
    let problem = |message: String| SloError::Format(format!("OpenSLO SLO {name:?}: {message}"));
    let spec = doc.spec;
    if spec.service != service {
        return Err(problem(format!(
            "service {:?} differs from {service:?}; put each service's SLOs in its own file",
            spec.service
        )));
    }
    if spec.budgeting_method != "Occurrences" {
        return Err(problem(format!(
            "budgetingMethod {:?} is not supported; Prometheus rules count events, use Occurrences",
            spec.budgeting_method
        )));
    }
    let period = match spec.time_window.as_slice() {
        [window] if window.is_rolling => PromDuration::parse(&window.duration)
            .map_err(|err| problem(format!("timeWindow duration {err}")))?,
        [_] => {
            return Err(problem(
                "calendar windows are not supported; set timeWindow isRolling: true".into(),
            ))
        }
        _ => {
            return Err(problem(
                "give exactly one timeWindow, e.g. duration: 30d".into(),
            ))
        }
    };
    let objective = match spec.objectives.as_slice() {
        [Objective {
            target: Some(ratio),
            ..
        }] => (ratio * 100.0 * 1e9).round() / 1e9,
        [Objective {
            target_percent: Some(percent),
            ..
        }] => *percent,
        _ => {
            return Err(problem(
                "give exactly one objective with a target (0.999) or targetPercent (99.9)".into(),
            ))
        }
    };
    let indicator = match (&spec.indicator, &spec.indicator_ref) {
        (Some(inline), _) => inline,
        (None, Some(reference)) => slis.get(reference).ok_or_else(|| {
            problem(format!(
                "indicatorRef {reference:?} names no `kind: SLI` document in the file"
            ))
        })?,
        (None, None) => return Err(problem("give an indicator or an indicatorRef".into())),
    };
    let sli = ratio_sli(indicator).map_err(problem)?;
    Ok(Slo {
        name,
        description: spec.description,
        objective,
        period,
        labels: doc.metadata.labels,
        sli,
        shape: None,
        alerting: Alerting::default(),
    })
}

fn ratio_sli(indicator: &SliDoc) -> Result<Sli, String> {
    let ratio = indicator.spec.ratio_metric.as_ref().ok_or_else(|| {
        format!(
            "SLI {:?} has no ratioMetric; only ratio SLIs become burn-rate rules",
            indicator.metadata.name
        )
    })?;
    let query = |metric: &MetricRef| -> Result<String, String> {
        if metric.metric_source.kind != "Prometheus" {
            return Err(format!(
                "metricSource type {:?} is not supported; use Prometheus",
                metric.metric_source.kind
            ));
        }
        Ok(metric.metric_source.spec.query.trim().to_string())
    };
    match (&ratio.bad, &ratio.good, &ratio.total, &ratio.raw) {
        (Some(bad), _, Some(total), _) => Ok(Sli::Events {
            error_query: query(bad)?,
            total_query: query(total)?,
        }),
        (None, Some(good), Some(total), _) => {
            let total = query(total)?;
            Ok(Sli::Events {
                error_query: format!("({total}) - ({})", query(good)?),
                total_query: total,
            })
        }
        (_, _, None, Some(raw)) if ratio.raw_type.as_deref() == Some("failure") => Ok(Sli::Raw {
            error_ratio_query: query(raw)?,
        }),
        _ => Err(
            "ratioMetric needs bad and total, good and total, or raw with rawType: failure".into(),
        ),
    }
}
