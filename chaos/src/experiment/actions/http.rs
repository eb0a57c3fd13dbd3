//! `http`: any request (maintenance mode on, a config reload); nothing to undo, write a
//! rollback for it.

use super::act::{client, no_answer, url_problem, Act, Acting, ActionError, Done};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAction {
    pub url: String,
    #[serde(default = "post")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// The status that means it worked; any 2xx without it.
    #[serde(
        default,
        deserialize_with = "crate::experiment::optional_number_or_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<u16>,
    #[serde(default)]
    pub insecure: bool,
}

fn post() -> String {
    "POST".into()
}

impl Act for HttpAction {
    fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = url_problem(&self.url).into_iter().collect();
        if reqwest::Method::from_bytes(self.method.as_bytes()).is_err() {
            problems.push(format!("{:?} is not an HTTP method", self.method));
        }
        problems
    }

    fn perform(&self) -> Acting<'_, Done> {
        Box::pin(async move {
            let method = reqwest::Method::from_bytes(self.method.as_bytes())
                .map_err(|err| ActionError::Failed(err.to_string()))?;
            let mut request = client(self.insecure)?.request(method, &self.url);
            for (name, value) in &self.headers {
                request = request.header(name, value);
            }
            if let Some(body) = &self.body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .map_err(|err| no_answer(&self.url, err))?;
            let status = response.status();
            let fine = self
                .status
                .map_or(status.is_success(), |wanted| status.as_u16() == wanted);
            if !fine {
                let body = response.text().await.unwrap_or_default();
                return Err(ActionError::Refused(format!(
                    "{} {} answered {status}: {body}",
                    self.method, self.url
                )));
            }
            Ok(Done::action(
                format!("{} {} answered {status}", self.method, self.url),
                None,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_and_the_method_are_checked() {
        let action: HttpAction = serde_yaml::from_str("{url: 'https://gw/maintenance'}").unwrap();
        assert!(action.problems().is_empty());
        assert_eq!(action.method, "POST");
        let action: HttpAction =
            serde_yaml::from_str("{url: 'gw/maintenance', method: 'NOT A METHOD'}").unwrap();
        let problems = action.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[1].contains("not an HTTP method"), "{problems:?}");
    }
}
