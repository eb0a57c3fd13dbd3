//! Probes: questions about the system with a yes or no answer, and a detail that says what was
//! seen. `http` (a status, optionally many times), `slo` (a live burn rate from `GET /api/slo`
//! below a bound), `alert` (an Alertmanager alert firing or not) and `prometheus` (a query's
//! value within bounds).

use super::client;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    Http(HttpProbe),
    Slo(SloProbe),
    Alert(AlertProbe),
    Prometheus(PrometheusProbe),
}

/// A request (or `repeat` of them) that must answer `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    pub url: String,
    #[serde(default = "get")]
    pub method: String,
    #[serde(default = "ok", deserialize_with = "super::number_or_text")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// Text the response body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    #[serde(default = "five", deserialize_with = "super::number_or_text")]
    pub timeout_seconds: f64,
    /// Sends this many requests one after another; every one must pass.
    #[serde(default = "one", deserialize_with = "super::number_or_text")]
    pub repeat: u32,
    /// Accept a self-signed certificate (what `aragora up` makes).
    #[serde(default)]
    pub insecure: bool,
}

/// The burn rate of one SLO, as a running aragora evaluates it, must stay below a bound.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloProbe {
    /// A running aragora (gateway or engine); `/api/slo` is added.
    pub url: String,
    /// The SLO's name (`availability`) or Sloth id (`aragora-availability`).
    pub slo: String,
    /// One window (`5m`); without it, every window must stay below the bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    #[serde(deserialize_with = "super::number_or_text")]
    pub max_burn_rate: f64,
    #[serde(default)]
    pub insecure: bool,
}

/// An alert in Alertmanager must be firing (or not).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertProbe {
    pub alertmanager_url: String,
    /// `alertname`.
    pub name: String,
    pub firing: bool,
    /// Further labels the alert must carry to count.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A PromQL query whose (first) value must lie within `min`..=`max`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusProbe {
    pub url: String,
    pub query: String,
    #[serde(
        default,
        deserialize_with = "super::optional_number_or_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub min: Option<f64>,
    #[serde(
        default,
        deserialize_with = "super::optional_number_or_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub max: Option<f64>,
    /// What an empty result means: true passes it (no data, no problem), false fails it.
    #[serde(default)]
    pub empty_passes: bool,
}

fn get() -> String {
    "GET".into()
}
fn ok() -> u16 {
    200
}
fn five() -> f64 {
    5.0
}
fn one() -> u32 {
    1
}

/// A probe's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub passed: bool,
    pub detail: String,
}

impl Outcome {
    fn pass(detail: impl Into<String>) -> Outcome {
        Outcome {
            passed: true,
            detail: detail.into(),
        }
    }

    fn fail(detail: impl Into<String>) -> Outcome {
        Outcome {
            passed: false,
            detail: detail.into(),
        }
    }
}

impl Probe {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let url = |url: &str, problems: &mut Vec<String>| {
            if !aragora_config::is_http_url(url) {
                problems.push(format!("{url:?} is not an http(s) URL"));
            }
        };
        match self {
            Probe::Http(http) => {
                url(&http.url, &mut problems);
                if reqwest::Method::from_bytes(http.method.as_bytes()).is_err() {
                    problems.push(format!("{:?} is not an HTTP method", http.method));
                }
                if !(100..=599).contains(&http.status) {
                    problems.push(format!("status {} is not an HTTP status", http.status));
                }
                if !(http.timeout_seconds > 0.0 && http.timeout_seconds <= 300.0) {
                    problems.push("timeout_seconds must be above 0 and at most 300".into());
                }
                if !(1..=10_000).contains(&http.repeat) {
                    problems.push("repeat must be between 1 and 10000".into());
                }
            }
            Probe::Slo(slo) => {
                url(&slo.url, &mut problems);
                if slo.max_burn_rate.is_nan() || slo.max_burn_rate <= 0.0 {
                    problems.push("max_burn_rate must be above 0 (1 spends the budget exactly over the period)".into());
                }
            }
            Probe::Alert(alert) => url(&alert.alertmanager_url, &mut problems),
            Probe::Prometheus(prometheus) => {
                url(&prometheus.url, &mut problems);
                if prometheus.min.is_none() && prometheus.max.is_none() {
                    problems.push("give `min`, `max` or both".into());
                }
            }
        }
        problems
    }

    /// One line saying what is asked, for progress and the report.
    pub fn describe(&self) -> String {
        match self {
            Probe::Http(http) if http.repeat > 1 => format!(
                "{} {} answers {} ({} times)",
                http.method, http.url, http.status, http.repeat
            ),
            Probe::Http(http) => format!("{} {} answers {}", http.method, http.url, http.status),
            Probe::Slo(slo) => format!(
                "SLO {} burns below {}x{}",
                slo.slo,
                slo.max_burn_rate,
                slo.window
                    .as_deref()
                    .map(|w| format!(" over {w}"))
                    .unwrap_or_default()
            ),
            Probe::Alert(alert) => format!(
                "alert {} is {}",
                alert.name,
                if alert.firing { "firing" } else { "not firing" }
            ),
            Probe::Prometheus(prometheus) => format!("{} in bounds", prometheus.query),
        }
    }

    pub async fn check(&self) -> Outcome {
        let result = match self {
            Probe::Http(http) => http.check().await,
            Probe::Slo(slo) => slo.check().await,
            Probe::Alert(alert) => alert.check().await,
            Probe::Prometheus(prometheus) => prometheus.check().await,
        };
        result.unwrap_or_else(Outcome::fail)
    }
}

impl HttpProbe {
    async fn check(&self) -> Result<Outcome, String> {
        let client = client(self.insecure, Duration::from_secs_f64(self.timeout_seconds))?;
        let method =
            reqwest::Method::from_bytes(self.method.as_bytes()).map_err(|err| err.to_string())?;
        let mut statuses = BTreeMap::<String, u32>::new();
        let mut first_failure = None;
        for _ in 0..self.repeat {
            let failure = self.send(&client, method.clone()).await.err();
            let key = failure
                .as_ref()
                .map_or(self.status.to_string(), |f| f.0.clone());
            *statuses.entry(key).or_default() += 1;
            if first_failure.is_none() {
                first_failure = failure.map(|f| f.1);
            }
        }
        let tally = statuses
            .iter()
            .map(|(status, count)| format!("{count}x {status}"))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(match first_failure {
            None => Outcome::pass(tally),
            Some(first) => Outcome::fail(format!("{tally}; first failure: {first}")),
        })
    }

    /// One request; on failure, a short key for the tally and a sentence for the report.
    async fn send(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
    ) -> Result<(), (String, String)> {
        let mut request = client.request(method, &self.url);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &self.body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|err| {
            let key = if err.is_timeout() {
                "timeout"
            } else {
                "no answer"
            };
            (key.to_string(), format!("{}: {err}", self.url))
        })?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        if status != self.status {
            let excerpt: String = body.chars().take(200).collect();
            return Err((
                status.to_string(),
                format!(
                    "{} answered {status}, not {}: {excerpt}",
                    self.url, self.status
                ),
            ));
        }
        if let Some(wanted) = &self.contains {
            if !body.contains(wanted.as_str()) {
                return Err((
                    format!("{status} without {wanted:?}"),
                    format!("{} answered without {wanted:?}", self.url),
                ));
            }
        }
        Ok(())
    }
}

impl SloProbe {
    async fn check(&self) -> Result<Outcome, String> {
        let endpoint = format!("{}/api/slo", self.url.trim_end_matches('/'));
        let body: serde_json::Value = client(self.insecure, Duration::from_secs(10))?
            .get(&endpoint)
            .send()
            .await
            .map_err(|err| format!("{endpoint} does not answer: {err}"))?
            .json()
            .await
            .map_err(|err| format!("{endpoint} did not answer JSON: {err}"))?;
        let slos = body["slos"].as_array().cloned().unwrap_or_default();
        let slo = slos
            .iter()
            .find(|s| s["slo"] == self.slo.as_str() || s["sloth_id"] == self.slo.as_str())
            .ok_or_else(|| {
                let names: Vec<String> = slos.iter().map(|s| s["slo"].to_string()).collect();
                format!(
                    "{endpoint} has no SLO {:?}; it has {}",
                    self.slo,
                    names.join(", ")
                )
            })?;
        let windows = slo["windows"].as_array().cloned().unwrap_or_default();
        let chosen: Vec<&serde_json::Value> = windows
            .iter()
            .filter(|w| {
                self.window
                    .as_deref()
                    .is_none_or(|name| w["window"] == name)
            })
            .collect();
        if chosen.is_empty() {
            return Err(format!(
                "SLO {} has no window {:?}",
                self.slo,
                self.window.as_deref().unwrap_or_default()
            ));
        }
        let mut worst: Option<(f64, String)> = None;
        for window in chosen {
            if let Some(rate) = window["burn_rate"].as_f64() {
                let name = window["window"].as_str().unwrap_or_default().to_string();
                if worst.as_ref().is_none_or(|(w, _)| rate > *w) {
                    worst = Some((rate, name));
                }
            }
        }
        Ok(match worst {
            None => Outcome::pass("no events in the window (no traffic is not an outage)"),
            Some((rate, window)) if rate < self.max_burn_rate => Outcome::pass(format!(
                "burn rate {rate:.2}x over {window} (bound {}x)",
                self.max_burn_rate
            )),
            Some((rate, window)) => Outcome::fail(format!(
                "burn rate {rate:.2}x over {window} is not below {}x",
                self.max_burn_rate
            )),
        })
    }
}

impl AlertProbe {
    async fn check(&self) -> Result<Outcome, String> {
        let endpoint = format!(
            "{}/api/v2/alerts",
            self.alertmanager_url.trim_end_matches('/')
        );
        let mut filters = vec![format!("alertname=\"{}\"", self.name)];
        filters.extend(
            self.labels
                .iter()
                .map(|(name, value)| format!("{name}=\"{value}\"")),
        );
        let query: Vec<(&str, &str)> = std::iter::once(("active", "true"))
            .chain(std::iter::once(("silenced", "false")))
            .chain(std::iter::once(("inhibited", "false")))
            .chain(filters.iter().map(|f| ("filter", f.as_str())))
            .collect();
        let alerts: Vec<serde_json::Value> = client(false, Duration::from_secs(10))?
            .get(&endpoint)
            .query(&query)
            .send()
            .await
            .map_err(|err| format!("Alertmanager at {endpoint} does not answer: {err}"))?
            .json()
            .await
            .map_err(|err| format!("{endpoint} did not answer a list of alerts: {err}"))?;
        let firing = !alerts.is_empty();
        let seen = if firing {
            format!("{} is firing ({} alert(s))", self.name, alerts.len())
        } else {
            format!("{} is not firing", self.name)
        };
        Ok(if firing == self.firing {
            Outcome::pass(seen)
        } else {
            Outcome::fail(seen)
        })
    }
}

impl PrometheusProbe {
    async fn check(&self) -> Result<Outcome, String> {
        let endpoint = format!("{}/api/v1/query", self.url.trim_end_matches('/'));
        let body: serde_json::Value = client(false, Duration::from_secs(10))?
            .get(&endpoint)
            .query(&[("query", self.query.as_str())])
            .send()
            .await
            .map_err(|err| format!("Prometheus at {endpoint} does not answer: {err}"))?
            .json()
            .await
            .map_err(|err| format!("{endpoint} did not answer JSON: {err}"))?;
        if body["status"] != "success" {
            return Err(format!("the query failed: {}", body["error"]));
        }
        let data = &body["data"];
        let value = match data["resultType"].as_str() {
            Some("scalar") => data["result"][1].as_str().map(str::to_string),
            _ => data["result"][0]["value"][1].as_str().map(str::to_string),
        };
        let Some(value) = value.and_then(|v| v.parse::<f64>().ok()) else {
            return Ok(if self.empty_passes {
                Outcome::pass("no data")
            } else {
                Outcome::fail("the query returned no data (set empty_passes: true if that is fine)")
            });
        };
        let low = self.min.is_none_or(|min| value >= min);
        let high = self.max.is_none_or(|max| value <= max);
        let bounds = format!(
            "{}..{}",
            self.min.map(|v| v.to_string()).unwrap_or_default(),
            self.max.map(|v| v.to_string()).unwrap_or_default()
        );
        Ok(if low && high {
            Outcome::pass(format!("{value} within {bounds}"))
        } else {
            Outcome::fail(format!("{value} outside {bounds}"))
        })
    }
}
