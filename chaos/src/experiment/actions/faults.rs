//! `proxy_fault` and `engine_fault`: a fault added through an API (the fault proxy's, or an
//! engine's `/api/system/faults`), and its removal as the undo.

use super::act::{client, no_answer, url_problem, Act, Acting, ActionError, Done, Undo};
use crate::link_faults::LinkFaultSpec;
use serde::{Deserialize, Serialize};

/// `proxy_fault`: adds a link fault to a running fault proxy (`aragora chaos proxy`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFaultAction {
    /// The fault proxy's API (`aragora chaos proxy --api`).
    pub api: String,
    pub proxy: String,
    pub fault: LinkFaultSpec,
    /// An admin credential for the proxy's API; unset, the `ARAGORA_API_TOKEN` of the process
    /// running the experiment (the proxy checks the same variable).
    #[serde(default)]
    pub token: Option<String>,
}

impl ProxyFaultAction {
    fn credential(&self) -> Option<String> {
        self.token
            .clone()
            .or_else(|| std::env::var("ARAGORA_API_TOKEN").ok())
            .filter(|token| !token.trim().is_empty())
    }
}

/// `request` with `token` as its bearer credential, when there is one.
fn with_token(request: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// `engine_fault`: `POST /api/system/faults` on an engine (slow or failing agent, database
/// outage).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineFaultAction {
    /// The engine (or the gateway in front of it).
    pub url: String,
    /// `ARAGORA_API_TOKEN` of that engine.
    pub token: String,
    /// The fault, as `POST /api/system/faults` takes it (`kind`, `duration_seconds`, ...).
    pub fault: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub insecure: bool,
}

/// Sends a request and reads its JSON answer; a non-2xx status is a refusal with the body.
async fn call(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<serde_json::Value, ActionError> {
    let response = request.send().await.map_err(|err| no_answer(what, err))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    if status.is_success() {
        Ok(body)
    } else {
        Err(ActionError::Refused(format!(
            "{what}: answered {status}: {body}"
        )))
    }
}

/// Deletes a fault; one that is already gone (404: it expired) counts as removed.
async fn remove(request: reqwest::RequestBuilder, endpoint: &str) -> Result<String, ActionError> {
    let response = request
        .send()
        .await
        .map_err(|err| no_answer(&format!("DELETE {endpoint}"), err))?;
    match response.status().as_u16() {
        200..=299 => Ok("removed".into()),
        404 => Ok("already gone (expired)".into()),
        status => Err(ActionError::Refused(format!(
            "DELETE {endpoint} answered {status}: {}",
            response.text().await.unwrap_or_default()
        ))),
    }
}

impl Act for ProxyFaultAction {
    fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = url_problem(&self.api).into_iter().collect();
        problems.extend(self.fault.problems());
        problems
    }

    fn perform(&self) -> Acting<'_, Done> {
        Box::pin(async move {
            let endpoint = format!(
                "{}/proxies/{}/faults",
                self.api.trim_end_matches('/'),
                self.proxy
            );
            let token = self.credential();
            let body = call(
                with_token(client(false)?.post(&endpoint), token.as_deref()).json(&self.fault),
                &format!("the fault proxy at {endpoint}"),
            )
            .await?;
            let id = body["id"].as_str().unwrap_or_default().to_string();
            Ok(Done::action(
                format!("{} on proxy {} ({id})", self.fault.describe(), self.proxy),
                Some(Box::new(RemoveProxyFault {
                    api: self.api.clone(),
                    proxy: self.proxy.clone(),
                    id,
                    token,
                })),
            ))
        })
    }
}

impl Act for EngineFaultAction {
    fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = url_problem(&self.url).into_iter().collect();
        if !self.fault.contains_key("kind") {
            problems.push(
                "the fault needs a `kind` (agent_slow, agent_failing, database_unavailable)".into(),
            );
        }
        if self.token.trim().is_empty() {
            problems.push("the engine's admin token is empty".into());
        }
        problems
    }

    fn perform(&self) -> Acting<'_, Done> {
        Box::pin(async move {
            let endpoint = format!("{}/api/system/faults", self.url.trim_end_matches('/'));
            let body = call(
                client(self.insecure)?
                    .post(&endpoint)
                    .bearer_auth(&self.token)
                    .json(&self.fault),
                &format!("the engine at {endpoint}"),
            )
            .await?;
            let id = body["id"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| body["id"].to_string());
            Ok(Done::action(
                format!(
                    "engine fault {} ({id})",
                    serde_json::Value::Object(self.fault.clone())
                ),
                Some(Box::new(RemoveEngineFault {
                    url: self.url.clone(),
                    token: self.token.clone(),
                    id,
                    insecure: self.insecure,
                })),
            ))
        })
    }
}

/// The undo of a `proxy_fault`.
#[derive(Debug, Clone)]
pub struct RemoveProxyFault {
    pub api: String,
    pub proxy: String,
    pub id: String,
    pub token: Option<String>,
}

impl Undo for RemoveProxyFault {
    fn describe(&self) -> String {
        format!("remove fault {} from proxy {}", self.id, self.proxy)
    }

    fn perform(&self) -> Acting<'_, String> {
        Box::pin(async move {
            let endpoint = format!(
                "{}/proxies/{}/faults/{}",
                self.api.trim_end_matches('/'),
                self.proxy,
                self.id
            );
            let request = with_token(client(false)?.delete(&endpoint), self.token.as_deref());
            remove(request, &endpoint).await
        })
    }
}

/// The undo of an `engine_fault`.
#[derive(Debug, Clone)]
pub struct RemoveEngineFault {
    pub url: String,
    pub token: String,
    pub id: String,
    pub insecure: bool,
}

impl Undo for RemoveEngineFault {
    fn describe(&self) -> String {
        format!("remove engine fault {}", self.id)
    }

    fn perform(&self) -> Acting<'_, String> {
        Box::pin(async move {
            let endpoint = format!(
                "{}/api/system/faults/{}",
                self.url.trim_end_matches('/'),
                self.id
            );
            remove(
                client(self.insecure)?
                    .delete(&endpoint)
                    .bearer_auth(&self.token),
                &endpoint,
            )
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_fault_needs_an_http_api_and_a_complete_link_fault() {
        let action: ProxyFaultAction = serde_yaml::from_str(
            "{api: 'http://127.0.0.1:8474', proxy: engine, fault: {kind: latency, latency_ms: 200}}",
        )
        .unwrap();
        assert!(action.problems().is_empty(), "{:?}", action.problems());
        let action: ProxyFaultAction =
            serde_yaml::from_str("{api: '127.0.0.1:8474', proxy: engine, fault: {kind: latency}}")
                .unwrap();
        let problems = action.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("not an http(s) URL"), "{problems:?}");
        assert!(problems[1].contains("latency_ms"), "{problems:?}");
    }

    #[test]
    fn an_engine_fault_needs_a_kind_and_a_token() {
        let action: EngineFaultAction = serde_yaml::from_str(
            "{url: 'http://127.0.0.1:8080', token: t, fault: {kind: agent_failing, duration_seconds: 30}}",
        )
        .unwrap();
        assert!(action.problems().is_empty(), "{:?}", action.problems());
        let action: EngineFaultAction =
            serde_yaml::from_str("{url: 'http://127.0.0.1:8080', token: ' ', fault: {}}").unwrap();
        let problems = action.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("needs a `kind`"), "{problems:?}");
        assert!(problems[1].contains("token is empty"), "{problems:?}");
    }

    #[tokio::test]
    async fn a_fault_the_api_rejects_is_refused_and_an_api_not_there_failed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "no such proxy") });
        tokio::spawn(async move { axum::serve(listener, app).await });
        let action = |api: &str| ProxyFaultAction {
            api: api.into(),
            proxy: "engine".into(),
            fault: crate::link_faults::LinkFaultSpec::new(crate::link_faults::LinkFaultKind::Reset),
            token: None,
        };
        let refused = action(&api).perform().await.unwrap_err();
        assert!(matches!(refused, ActionError::Refused(_)), "{refused:?}");
        assert!(refused.to_string().contains("404"), "{refused}");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let nowhere = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let failed = action(&nowhere).perform().await.unwrap_err();
        assert!(matches!(failed, ActionError::Failed(_)), "{failed:?}");
    }
}
