//! `aragora webhooks ...`: the admin API's webhook endpoints from a shell (list, add, pause,
//! resume, delete, the dead-letter queue and its retry). Everything goes through the running
//! engine's API, so a subscription made here is checked, encrypted and audited exactly as one
//! made with curl; this module only builds the requests and prints the answers.

use crate::dr::Output;
use crate::token::{engine_url, load_engine, StoreArgs};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// The subscriptions: id, state, events, URL, last delivery, breaker.
    List {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Subscribe URL to events (repeat --event); prints the new id.
    Add {
        /// `https://...` of the receiver.
        #[arg(value_name = "RECEIVER_URL")]
        receiver: String,
        /// debate_start, debate_end, consensus, debate_failed, drill_failed or slo_alert; repeat
        /// for several.
        #[arg(long = "event", required = true)]
        events: Vec<String>,
        /// A file holding the signing secret (16 to 256 characters; read, never echoed). Without
        /// one, deliveries are unsigned.
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// Create it paused.
        #[arg(long)]
        paused: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop delivering to a subscription (events meanwhile are not queued).
    Pause {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Deliver to a paused subscription again.
    Resume {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Delete a subscription and its deliveries.
    Delete {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The dead-letter queue: deliveries that ran out of retries.
    DeadLetters {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Queue a dead delivery again (it gets a fresh set of retries).
    Retry {
        delivery_id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Where the engine is and the admin credential.
#[derive(Args)]
pub struct ApiArgs {
    /// The engine's API (default: this configuration's engine, http://127.0.0.1:<api port>).
    #[arg(long)]
    url: Option<String>,
    /// The admin credential: ARAGORA_API_TOKEN when set, else `aragora up`'s admin key file
    /// (<data dir>/admin.key).
    #[command(flatten)]
    store: StoreArgs,
}

/// An admin client of one engine.
struct Api {
    base: String,
    credential: String,
    client: reqwest::Client,
}

impl Api {
    fn from_args(args: &ApiArgs) -> Result<Self, ExitCode> {
        let engine = load_engine(&args.store)?;
        let key_file = engine.data_dir.join("admin.key");
        let credential = match engine.auth.api_token.clone() {
            Some(token) => token,
            None => match std::fs::read_to_string(&key_file) {
                Ok(key) => key.trim().to_string(),
                Err(_) => {
                    eprintln!(
                        "aragora: no admin credential: set ARAGORA_API_TOKEN, or run where `aragora up` wrote {}",
                        key_file.display()
                    );
                    return Err(ExitCode::from(crate::settings::EXIT_BAD_CONFIG));
                }
            },
        };
        let base = args.url.clone().unwrap_or_else(|| engine_url(&engine));
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|err| fail(&format!("cannot build an HTTP client: {err}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            credential,
            client,
        })
    }

    /// The answer's JSON, or the API's error message (exit 1; 2 for a refused request).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ExitCode> {
        let url = format!("{}/api/admin/webhooks{path}", self.base);
        let mut request = self
            .client
            .request(method, &url)
            .bearer_auth(&self.credential);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.map_err(|err| {
            fail(&format!(
                "cannot reach the engine at {}: {}; is it running? (--url)",
                self.base,
                aragora_telemetry::error_with_causes(&err)
            ))
        })?;
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(value);
        }
        let message = value["error"]["message"].as_str().unwrap_or("no message");
        eprintln!("aragora: the engine refused ({status}): {message}");
        Err(ExitCode::from(if status.is_client_error() { 2 } else { 1 }))
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("aragora: {message}");
    ExitCode::FAILURE
}

pub async fn run(command: WebhooksCommand) -> ExitCode {
    match execute(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

async fn execute(command: WebhooksCommand) -> Result<(), ExitCode> {
    use reqwest::Method;
    match command {
        WebhooksCommand::List { api, output } => {
            let list = Api::from_args(&api)?.call(Method::GET, "", None).await?;
            print_rows(
                &list["webhooks"],
                output,
                subscription_line,
                "no webhook subscriptions",
            );
        }
        WebhooksCommand::Add {
            receiver,
            events,
            secret_file,
            paused,
            api,
        } => {
            let mut body = json!({"url": receiver, "event_types": events, "enabled": !paused});
            if let Some(file) = secret_file {
                let secret = std::fs::read_to_string(&file).map_err(|err| {
                    fail(&format!(
                        "cannot read the secret file {}: {err}",
                        file.display()
                    ))
                })?;
                body["secret"] = Value::String(secret.trim().to_string());
            }
            let made = Api::from_args(&api)?
                .call(Method::POST, "", Some(body))
                .await?;
            println!("{}", subscription_line(&made));
        }
        WebhooksCommand::Pause { id, api } => {
            let done = Api::from_args(&api)?
                .call(Method::POST, &format!("/{id}/pause"), None)
                .await?;
            println!("{}", subscription_line(&done));
        }
        WebhooksCommand::Resume { id, api } => {
            let done = Api::from_args(&api)?
                .call(Method::POST, &format!("/{id}/resume"), None)
                .await?;
            println!("{}", subscription_line(&done));
        }
        WebhooksCommand::Delete { id, api } => {
            Api::from_args(&api)?
                .call(Method::DELETE, &format!("/{id}"), None)
                .await?;
            println!("deleted {id}");
        }
        WebhooksCommand::DeadLetters { api, output } => {
            let dead = Api::from_args(&api)?
                .call(Method::GET, "/dead-letters", None)
                .await?;
            if output == Output::Text {
                println!("{} dead deliveries", dead["total"]);
            }
            print_rows(
                &dead["deliveries"],
                output,
                delivery_line,
                "the dead-letter queue is empty",
            );
        }
        WebhooksCommand::Retry { delivery_id, api } => {
            let path = format!("/deliveries/{delivery_id}/retry");
            Api::from_args(&api)?
                .call(Method::POST, &path, Some(json!({})))
                .await?;
            println!("queued {delivery_id} again");
        }
    }
    Ok(())
}

fn print_rows(rows: &Value, output: Output, line: fn(&Value) -> String, empty: &str) {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(rows).unwrap_or_default()),
        Output::Text => match rows.as_array() {
            Some(rows) if !rows.is_empty() => rows.iter().for_each(|row| println!("{}", line(row))),
            _ => println!("{empty}"),
        },
    }
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_string)
}

fn subscription_line(s: &Value) -> String {
    let events: Vec<String> = s["event_types"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let last = match &s["last_delivery"] {
        Value::Null => "no deliveries yet".to_string(),
        d => format!("last {} {}", text(&d["state"]), text(&d["updated_at"])),
    };
    format!(
        "{}  {}  {}  {}  signed={}  breaker={}  {last}",
        text(&s["id"]),
        text(&s["state"]),
        events.join(","),
        text(&s["url"]),
        s["has_secret"],
        text(&s["breaker"]),
    )
}

fn delivery_line(d: &Value) -> String {
    format!(
        "{}  {}  webhook {}  {} attempts  last {}  {}",
        text(&d["id"]),
        text(&d["event_type"]),
        text(&d["webhook_id"]),
        d["attempts"],
        text(&d["updated_at"]),
        d["last_error"].as_str().unwrap_or(""),
    )
}
