//! Prometheus rule files, as data that serialises to the YAML Prometheus loads.
//!
//! | module | renders |
//! |---|---|
//! | [`sloth`] | Sloth-compatible SLI and metadata recording rules and multiwindow multi-burn-rate alerts |
//! | [`operational`] | the 15 alerts of the Production Operations Runbook, 5 DR alerts, a security alert |
//! | [`infrastructure`] | PostgreSQL connections, Redis memory, disk (over the exporters) and TLS expiry |

pub mod infrastructure;
pub mod operational;
pub mod sloth;

use crate::model::Labels;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleGroup {
    pub name: String,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Rule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    pub expr: String,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub annotations: Labels,
}

impl Rule {
    pub fn record(name: &str, expr: String, labels: Labels) -> Self {
        Self {
            record: Some(name.into()),
            expr,
            labels,
            ..Self::default()
        }
    }
}

/// Labels from several maps; later maps win.
pub fn merge(maps: &[&Labels]) -> Labels {
    maps.iter()
        .flat_map(|map| map.iter())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Replaces `{{ $labels.NAME }}` (and `{{$labels.NAME}}`) with the label's value: what
/// Prometheus does to the annotations, for the expected values of the promtool tests.
pub fn expand_labels(template: &str, labels: &Labels) -> String {
    let mut text = template.to_string();
    for (name, value) in labels {
        for form in [
            format!("{{{{ $labels.{name} }}}}"),
            format!("{{{{$labels.{name}}}}}"),
        ] {
            text = text.replace(&form, value);
        }
    }
    text
}
