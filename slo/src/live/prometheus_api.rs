//! [`PrometheusSource`]: SLI error ratios from a Prometheus server's HTTP API, with the spec's
//! own queries (what the recording rules compute).

use super::source::{http_client, LiveError, SliSource, TimeRange};
use crate::duration::PromDuration;
use crate::model::{Sli, Slo};
use crate::promql::WINDOW_PLACEHOLDER;
use std::time::Duration;

/// SLI error ratios from a Prometheus server's `/api/v1/query`, with the spec's own queries.
pub struct PrometheusSource {
    client: reqwest::Client,
    base_url: String,
}

impl PrometheusSource {
    pub fn new(base_url: &str) -> Self {
        Self {
            client: http_client(),
            base_url: base_url.trim_end_matches('/').to_string(),
        }
    }

    /// The query of the SLI's error ratio over `window`, as the recording rule has it, except
    /// that no errors at all is a ratio of 0, not no answer: a counter of failures labelled by
    /// status has no series until the first failure, so `errors / total` alone is empty on a
    /// healthy service. `or 0 * total` gives the error side a 0 wherever there is traffic.
    pub fn query(slo: &Slo, window: Duration) -> String {
        let range = PromDuration(window.as_secs().max(1)).to_string();
        let fill = |query: &str| query.replace(WINDOW_PLACEHOLDER, &range);
        match &slo.sli {
            Sli::Events {
                error_query,
                total_query,
            } => {
                let (errors, total) = (fill(error_query), fill(total_query));
                format!("(({errors}) or (0 * ({total}))) / ({total})")
            }
            Sli::Raw { error_ratio_query } => fill(error_ratio_query),
        }
    }
}

impl PrometheusSource {
    /// The `data.result` of an instant `query`; `what` names it in a refusal.
    async fn instant(&self, query: &str, what: String) -> Result<serde_json::Value, LiveError> {
        self.ask("query", &[("query", query.to_string())], what)
            .await
    }

    /// The `data.result` of `/api/v1/{api}` with `params`.
    async fn ask(
        &self,
        api: &str,
        params: &[(&str, String)],
        what: String,
    ) -> Result<serde_json::Value, LiveError> {
        const SERVICE: &str = "Prometheus";
        let url = format!("{}/api/v1/{api}", self.base_url);
        let response = self
            .client
            .get(&url)
            .query(params)
            .send()
            .await
            .map_err(|err| LiveError::from_request(SERVICE, &self.base_url, &err))?;
        let mut body: serde_json::Value = response.json().await.map_err(|err| {
            if err.is_timeout() {
                LiveError::from_request(SERVICE, &self.base_url, &err)
            } else {
                LiveError::Invalid {
                    service: SERVICE,
                    reason: format!("not JSON: {err}"),
                }
            }
        })?;
        if body["status"] != "success" {
            return Err(LiveError::Refused {
                service: SERVICE,
                what,
                reason: body["error"].to_string(),
            });
        }
        Ok(body["data"]["result"].take())
    }

    /// The bucket bounds (`le`, `+Inf` aside, ascending) Prometheus has for histogram `metric`
    /// (its name without `_bucket`), from `count by (le) (<metric>_bucket)`: empty when
    /// Prometheus has no such series (yet).
    pub async fn bucket_bounds(&self, metric: &str) -> Result<Vec<f64>, LiveError> {
        let result = self
            .instant(
                &format!("count by (le) ({metric}_bucket)"),
                format!("the bucket lookup of {metric}"),
            )
            .await?;
        let mut bounds: Vec<f64> = result
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|series| series["metric"]["le"].as_str()?.parse::<f64>().ok())
            .filter(|bound| bound.is_finite())
            .collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        Ok(bounds)
    }
}

#[async_trait::async_trait]
impl SliSource for PrometheusSource {
    async fn error_ratio(&self, slo: &Slo, window: Duration) -> Result<Option<f64>, LiveError> {
        let result = self
            .instant(
                &Self::query(slo, window),
                format!("the query of SLO {}", slo.name),
            )
            .await?;
        let value = result[0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok());
        Ok(value.filter(|v| v.is_finite()))
    }

    async fn error_ratio_range(
        &self,
        slo: &Slo,
        window: Duration,
        range: &TimeRange,
    ) -> Result<Option<Vec<(f64, Option<f64>)>>, LiveError> {
        let params = [
            ("query", Self::query(slo, window)),
            ("start", format!("{:.3}", range.start)),
            ("end", format!("{:.3}", range.end)),
            ("step", format!("{:.3}", range.step)),
        ];
        let result = self
            .ask(
                "query_range",
                &params,
                format!("the range query of SLO {}", slo.name),
            )
            .await?;
        // One series (the query aggregates); a step without a value has no pair at all.
        let values = result[0]["values"].as_array().cloned().unwrap_or_default();
        Ok(Some(
            values
                .iter()
                .filter_map(|pair| {
                    let at = pair[0].as_f64()?;
                    let value = pair[1].as_str().and_then(|v| v.parse::<f64>().ok());
                    Some((at, value.filter(|v| v.is_finite())))
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::SloSettings;

    #[test]
    fn prometheus_queries_fill_the_window() {
        let spec = SloSettings::default().default_spec();
        let query = PrometheusSource::query(&spec.slos[0], Duration::from_secs(3600));
        assert!(
            query.contains("[1h]") && !query.contains(WINDOW_PLACEHOLDER),
            "{query}"
        );
        assert!(
            query.starts_with("((") && query.contains(") / ("),
            "{query}"
        );
        assert!(
            query.contains(" or (0 * ("),
            "no failure series yet reads as a ratio of 0: {query}"
        );
    }
}
