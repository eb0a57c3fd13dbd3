//! Where Alertmanager sends aragora's alerts: the receiver settings (`ARAGORA_ALERT_*`) and
//! `deploy/alertmanager/alertmanager.yml` rendered from them (`aragora slo generate
//! --alertmanager FILE`). The routing tree (severity `critical` to `pager`, `warning` to `chat`)
//! and the inhibit rules are fixed; the receivers' addresses are the operator's.
//!
//! | receiver | gets | from |
//! |---|---|---|
//! | `pager` | `severity="critical"` (SLO pages, the runbook's criticals) | `ARAGORA_ALERT_PAGER_WEBHOOK_URL`, and e-mail to `ARAGORA_ALERT_EMAIL_TO` when set |
//! | `chat` | everything else (`severity="warning"`: SLO tickets, the runbook's warnings) | `ARAGORA_ALERT_CHAT_WEBHOOK_URL` |
//!
//! Both webhooks default to `aragora control`'s sink ([`crate::sink`], `POST
//! /api/alerts/webhook` on control's default `127.0.0.1:9095`), so a first install's pages land
//! somewhere visible (its log and `aragora_alert_notifications_received_total`) before a
//! pager is wired. Secrets never enter the rendered file: the webhook bearer and the SMTP
//! password are files Alertmanager reads (`credentials_file`, `auth_password_file`).

use aragora_config::{ConfigProblem, Env, Settings};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The path of `aragora control`'s webhook sink.
pub const SINK_PATH: &str = "/api/alerts/webhook";
/// Where the webhooks go unless configured: control's sink on its default listener.
pub const DEFAULT_WEBHOOK_URL: &str = "http://127.0.0.1:9095/api/alerts/webhook";
/// The receiver of `severity="critical"`.
pub const PAGER: &str = "pager";
/// The receiver of everything else.
pub const CHAT: &str = "chat";
/// The shortest bearer token the sink accepts as its credential.
pub const MIN_TOKEN_LEN: usize = 16;

/// The receivers' addresses. `Debug` hides nothing secret: the secrets are files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiverSettings {
    pub pager_webhook_url: String,
    pub chat_webhook_url: String,
    pub webhook_token_file: Option<PathBuf>,
    pub email_to: Option<String>,
    pub email_from: String,
    pub smtp_smarthost: Option<String>,
    pub smtp_auth_username: Option<String>,
    pub smtp_auth_password_file: Option<PathBuf>,
    pub smtp_require_tls: bool,
}

impl Default for ReceiverSettings {
    fn default() -> Self {
        Self {
            pager_webhook_url: DEFAULT_WEBHOOK_URL.into(),
            chat_webhook_url: DEFAULT_WEBHOOK_URL.into(),
            webhook_token_file: None,
            email_to: None,
            email_from: "aragora-alerts@localhost".into(),
            smtp_smarthost: None,
            smtp_auth_username: None,
            smtp_auth_password_file: None,
            smtp_require_tls: true,
        }
    }
}

aragora_config::settings! {
    ReceiverSettings;
    pager_webhook_url: ["ARAGORA_ALERT_PAGER_WEBHOOK_URL"] "Webhook Alertmanager sends `severity=\"critical\"` alerts to (receiver `pager`: a PagerDuty/Opsgenie events URL); by default `aragora control`'s sink, which logs and counts them.";
    chat_webhook_url: ["ARAGORA_ALERT_CHAT_WEBHOOK_URL"] "Webhook Alertmanager sends the other alerts (`severity=\"warning\"`) to (receiver `chat`: a Slack/Mattermost bridge); by default `aragora control`'s sink.";
    webhook_token_file: ["ARAGORA_ALERT_WEBHOOK_TOKEN_FILE"] "File holding a bearer token (at least 16 characters): Alertmanager sends it to both webhooks (`credentials_file`) and `aragora control`'s sink then refuses requests without it; unset, the sink is open (it only logs and counts).";
    email_to: ["ARAGORA_ALERT_EMAIL_TO"] "Also mail the `pager` receiver's alerts to this address (needs ARAGORA_ALERT_SMTP_SMARTHOST); none by default.";
    email_from: ["ARAGORA_ALERT_EMAIL_FROM"] "Sender address of the alert e-mails.";
    smtp_smarthost: ["ARAGORA_ALERT_SMTP_SMARTHOST"] "SMTP server (`host:port`) the alert e-mails go through.";
    smtp_auth_username: ["ARAGORA_ALERT_SMTP_AUTH_USERNAME"] "SMTP user name, when the server wants one.";
    smtp_auth_password_file: ["ARAGORA_ALERT_SMTP_AUTH_PASSWORD_FILE"] "File holding the SMTP password (Alertmanager reads it; the password never enters the rendered file).";
    smtp_require_tls: ["ARAGORA_ALERT_SMTP_REQUIRE_TLS"] "Refuse to mail over an SMTP connection without STARTTLS.";
}

impl Settings for ReceiverSettings {
    fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        for (key, url) in [
            ("ARAGORA_ALERT_PAGER_WEBHOOK_URL", &self.pager_webhook_url),
            ("ARAGORA_ALERT_CHAT_WEBHOOK_URL", &self.chat_webhook_url),
        ] {
            if !aragora_config::is_http_url(url) || url.chars().any(char::is_whitespace) {
                problems.push(ConfigProblem::new(
                    key,
                    format!(
                        "is {:?}; use an http:// or https:// URL",
                        aragora_config::redact_url(url)
                    ),
                ));
            }
        }
        for (key, file) in [
            ("ARAGORA_ALERT_WEBHOOK_TOKEN_FILE", &self.webhook_token_file),
            (
                "ARAGORA_ALERT_SMTP_AUTH_PASSWORD_FILE",
                &self.smtp_auth_password_file,
            ),
        ] {
            if let Some(file) = file.as_deref().filter(|file| !file.is_absolute()) {
                problems.push(ConfigProblem::new(
                    key,
                    format!(
                        "is {}; give an absolute path (Alertmanager reads it from its own directory)",
                        file.display()
                    ),
                ));
            }
        }
        if !is_address(&self.email_from) {
            problems.push(ConfigProblem::new(
                "ARAGORA_ALERT_EMAIL_FROM",
                format!(
                    "is {:?}; give an address such as alerts@example.com",
                    self.email_from
                ),
            ));
        }
        if let Some(to) = &self.email_to {
            if !to.split(',').map(str::trim).all(is_address) {
                problems.push(ConfigProblem::new(
                    "ARAGORA_ALERT_EMAIL_TO",
                    format!("is {to:?}; give an address (or several, comma-separated) such as oncall@example.com"),
                ));
            }
            if self.smtp_smarthost.is_none() {
                problems.push(ConfigProblem::new(
                    "ARAGORA_ALERT_SMTP_SMARTHOST",
                    "is unset while ARAGORA_ALERT_EMAIL_TO is set; give the SMTP server as host:port",
                ));
            }
        }
        if let Some(host) = &self.smtp_smarthost {
            let port = host
                .rsplit_once(':')
                .map(|(name, port)| (name, port.parse::<u16>()));
            if !matches!(port, Some((name, Ok(port))) if !name.is_empty() && port > 0) {
                problems.push(ConfigProblem::new(
                    "ARAGORA_ALERT_SMTP_SMARTHOST",
                    format!("is {host:?}; give host:port, such as smtp.example.com:587"),
                ));
            }
        }
        problems
    }
}

fn is_address(text: &str) -> bool {
    matches!(text.split_once('@'), Some((user, domain)) if !user.is_empty() && !domain.is_empty() && !text.contains(char::is_whitespace))
}

/// Why the sink's token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds {len} characters; a token needs at least {MIN_TOKEN_LEN} (openssl rand -hex 32 > {path})")]
    TooShort { path: String, len: usize },
}

impl ReceiverSettings {
    /// Defaults, then the environment, validated; every problem at once.
    pub fn from_env(env: &Env) -> Result<Self, Vec<ConfigProblem>> {
        Self::load(None, env)
    }

    /// The bearer token the sink requires, read from `ARAGORA_ALERT_WEBHOOK_TOKEN_FILE` (trimmed,
    /// as Alertmanager trims it); `None` when the file is not configured.
    pub fn webhook_token(&self) -> Result<Option<String>, TokenFileError> {
        let Some(path) = &self.webhook_token_file else {
            return Ok(None);
        };
        read_token(path).map(Some)
    }

    /// `alertmanager.yml` for these receivers.
    pub fn render(&self) -> String {
        let mut text = String::from(HEAD);
        text.push_str("receivers:\n");
        text.push_str(&format!("  - name: {PAGER}\n"));
        text.push_str(&self.webhook(&self.pager_webhook_url));
        if let (Some(to), Some(smarthost)) = (&self.email_to, &self.smtp_smarthost) {
            text.push_str("    email_configs:\n");
            text.push_str(&format!("      - to: {}\n", quoted(to)));
            text.push_str(&format!("        from: {}\n", quoted(&self.email_from)));
            text.push_str(&format!("        smarthost: {}\n", quoted(smarthost)));
            if let Some(user) = &self.smtp_auth_username {
                text.push_str(&format!("        auth_username: {}\n", quoted(user)));
            }
            if let Some(file) = &self.smtp_auth_password_file {
                text.push_str(&format!(
                    "        auth_password_file: {}\n",
                    quoted(&file.display().to_string())
                ));
            }
            text.push_str(&format!("        require_tls: {}\n", self.smtp_require_tls));
            text.push_str("        send_resolved: true\n");
        }
        text.push_str(&format!("  - name: {CHAT}\n"));
        text.push_str(&self.webhook(&self.chat_webhook_url));
        text.push_str(INHIBIT);
        text
    }

    fn webhook(&self, url: &str) -> String {
        let mut text = format!(
            "    webhook_configs:\n      - url: {}\n        send_resolved: true\n",
            quoted(url)
        );
        if let Some(file) = &self.webhook_token_file {
            text.push_str(&format!(
                "        http_config:\n          authorization:\n            type: Bearer\n            credentials_file: {}\n",
                quoted(&file.display().to_string())
            ));
        }
        text
    }
}

fn read_token(path: &Path) -> Result<String, TokenFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Unreadable {
        path: shown.clone(),
        source,
    })?;
    let token = text.trim().to_string();
    if token.len() < MIN_TOKEN_LEN {
        return Err(TokenFileError::TooShort {
            path: shown,
            len: token.len(),
        });
    }
    Ok(token)
}

/// A YAML double-quoted scalar: JSON's string syntax is YAML's, so nothing in a value (`#`,
/// `: `) can change the document's structure.
fn quoted(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

const HEAD: &str = r#"# Generated by `aragora slo generate --alertmanager FILE` from the ARAGORA_ALERT_* settings
# (README, "Alert receivers"); do not edit: set them and regenerate. `amtool check-config` validates it.
#
# Alertmanager routing for aragora's alerts (alerts/*.yaml).
#   severity=critical (SLO pages, runbook criticals) -> receiver pager
#   severity=warning  (SLO tickets, runbook warnings) -> receiver chat
# Alerts of one SLO are grouped together (page and ticket share an alert name and sloth_slo),
# and an SLO's ticket is held while its page fires. The webhooks default to `aragora control`'s
# sink (POST /api/alerts/webhook on 127.0.0.1:9095), which logs and counts what it receives.
global:
  resolve_timeout: 5m

route:
  receiver: chat
  group_by: [alertname, sloth_service, sloth_slo]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - receiver: pager
      matchers: ['severity="critical"']
      repeat_interval: 1h
    - receiver: chat
      matchers: ['severity="warning"']

"#;

const INHIBIT: &str = r#"
inhibit_rules:
  # The ticket of an SLO says nothing new while its page fires.
  - source_matchers: ['sloth_severity="page"']
    target_matchers: ['sloth_severity="ticket"']
    equal: [sloth_service, sloth_slo]
  # The runbook's warnings are the early half of its criticals.
  - source_matchers: ['alertname="AragoraAvailabilitySLOBreach"']
    target_matchers: ['alertname="AragoraAvailabilitySLOWarning"']
  - source_matchers: ['alertname="AragoraLatencySLOBreach"']
    target_matchers: ['alertname="AragoraLatencySLOWarning"']
  - source_matchers: ['alertname="AragoraManyCircuitsOpen"']
    target_matchers: ['alertname="AragoraAgentCircuitOpen"']
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use aragora_config::env_map as env;

    #[test]
    fn bad_receivers_name_their_variables() {
        let problems = ReceiverSettings::from_env(&env(&[
            ("ARAGORA_ALERT_PAGER_WEBHOOK_URL", "pager.example.com/hook"),
            ("ARAGORA_ALERT_WEBHOOK_TOKEN_FILE", "token.txt"),
            ("ARAGORA_ALERT_EMAIL_TO", "oncall"),
        ]))
        .unwrap_err();
        let named: Vec<&str> = problems.iter().map(|p| p.setting.as_str()).collect();
        assert_eq!(
            named,
            [
                "ARAGORA_ALERT_PAGER_WEBHOOK_URL",
                "ARAGORA_ALERT_WEBHOOK_TOKEN_FILE",
                "ARAGORA_ALERT_EMAIL_TO",
                "ARAGORA_ALERT_SMTP_SMARTHOST"
            ],
            "{problems:?}"
        );
        let problems =
            ReceiverSettings::from_env(&env(&[("ARAGORA_ALERT_SMTP_SMARTHOST", "smtp")]))
                .unwrap_err();
        assert_eq!(problems[0].setting, "ARAGORA_ALERT_SMTP_SMARTHOST");
    }

    #[test]
    fn the_rendered_receivers_carry_the_settings_and_no_secret() {
        let settings = ReceiverSettings::from_env(&env(&[
            (
                "ARAGORA_ALERT_PAGER_WEBHOOK_URL",
                "https://events.example.com/v2/enqueue",
            ),
            (
                "ARAGORA_ALERT_WEBHOOK_TOKEN_FILE",
                "/etc/alertmanager/aragora.token",
            ),
            ("ARAGORA_ALERT_EMAIL_TO", "oncall@example.com"),
            ("ARAGORA_ALERT_SMTP_SMARTHOST", "smtp.example.com:587"),
            (
                "ARAGORA_ALERT_SMTP_AUTH_PASSWORD_FILE",
                "/etc/alertmanager/smtp.pw",
            ),
        ]))
        .unwrap();
        let yaml: serde_yaml::Value = serde_yaml::from_str(&settings.render()).unwrap();
        let pager = &yaml["receivers"][0];
        assert_eq!(pager["name"], PAGER);
        assert_eq!(
            pager["webhook_configs"][0]["url"],
            "https://events.example.com/v2/enqueue"
        );
        assert_eq!(
            pager["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"],
            "/etc/alertmanager/aragora.token"
        );
        assert_eq!(pager["email_configs"][0]["to"], "oncall@example.com");
        assert_eq!(
            pager["email_configs"][0]["smarthost"],
            "smtp.example.com:587"
        );
        let chat = &yaml["receivers"][1];
        assert_eq!(chat["webhook_configs"][0]["url"], DEFAULT_WEBHOOK_URL);
        assert!(chat.get("email_configs").is_none());
    }

    #[test]
    fn a_short_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "short\n").unwrap();
        let settings = ReceiverSettings {
            webhook_token_file: Some(file),
            ..ReceiverSettings::default()
        };
        assert!(matches!(
            settings.webhook_token(),
            Err(TokenFileError::TooShort { len: 5, .. })
        ));
    }

    #[test]
    fn the_readme_documents_every_receiver_setting() {
        let readme = include_str!("../../README.md");
        for setting in SETTINGS {
            for env in setting.env {
                assert!(readme.contains(&format!("`{env}`")), "README lacks {env}");
            }
        }
    }
}
