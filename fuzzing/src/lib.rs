//! Fuzz targets: one `pub fn TARGET(data: &[u8])` per parser of outside input, each driving the
//! real parser (the same function the server, the CLI or the gateway calls) and checking what
//! must hold whatever the bytes: no panic, refusals that are the client's (4xx) with a message,
//! and the properties a parser has (parse, render, parse gives the same value; a streamed
//! answer reads the same however the network cut it).
//!
//! `fuzz/` (cargo-fuzz, outside the workspace) has a one-line libFuzzer target per function;
//! `tests/corpus.rs` replays every file of `fuzz/corpus/TARGET/` and `fuzz/regressions/TARGET/`
//! through the same functions under plain `cargo test`. `scripts/fuzz.sh` runs each target for
//! a bounded time.
//!
//! | target | parser | properties |
//! |---|---|---|
//! | `debate_create` | `POST /api/debates` body (`engine::http::parse_create`) | accepted ⇒ within every limit; refused ⇒ 400/422 with a message |
//! | `debate_query` | `GET /api/debates` query (`engine::http::parse_list_query`) | accepted ⇒ limit 1..=100, offset ≥ 0; refused ⇒ 400 |
//! | `ws_message` | `/ws` client messages (`ws::parse_client_message`) and the `/ws` query (`WsQuery`) | no panic |
//! | `credential` | bearer tokens: JWTs, loop tokens, API keys, `ARAGORA_API_TOKEN` (`auth::Authenticator`), `Authorization`, `Origin` | the header and the bare token get the same answer; only the seeds' credentials are accepted |
//! | `config_toml` | every TOML config part (`aragora_config::from_toml_str`, then the env overlay and `validate`) | no panic |
//! | `slo_spec` | SLO specs, all three formats (`slo::spec::parse`), then `check` and `generate` | parse, render (`render_own`), parse gives the same spec |
//! | `chaos_experiment` | chaos experiment YAML (`chaos::experiment::parse`) | no panic |
//! | `backup_manifest` | backup manifests (`chaos::manifest::parse`) | parse, write, parse gives the same manifest |
//! | `gateway_route` | the gateway's debate id and affinity (`route::Stickiness`), `X-Forwarded-For` (`client::Client`), route templates (`telemetry::route_index`) | an untrusted peer is its own address; the route template is the one a segment-by-segment match gives |
//! | `provider_stream` | server-sent event streams of the three wire formats (`providers::StreamReader`) | the result does not depend on where the stream is cut; the deltas add up to the text |
//! | `provider_body` | whole answers of the three wire formats (`providers::parse_body`), `Retry-After`, vote parsing | no panic; a vote names one of the positions |
//! | `alert_webhook` | Alertmanager webhook payloads at `aragora control`'s sink (`slo::sink::WebhookSink::receive`) | accepted ⇒ its alerts counted; refused ⇒ 400/422 with a message; no token ⇒ 401 before reading |
//! | `lean_h1` | the lean HTTP/1.1 engine's request heads (`lean::h1::Parsed`, `lean::examine`, `framing::check`, `framing::sizes`), the head it forwards (`lean::forward_head`), chunked bodies (`lean::h1::Chunks`) | the head ends at its first empty line; served or refused with 400/413/431/501, never both `Content-Length` and `Transfer-Encoding`; the framing is the one the headers say; the forwarded head parses back to the same request; the chunked scanner ends where a strict reference decoder does, however the bytes are cut, and an encoded body decodes back |
//! | `receipt` | receipts (`receipts::ReceiptKeys::verify_json`) | canonical JSON round-trips; verification ignores formatting; a signed receipt verifies |

mod alerts;
mod chaos;
mod config;
mod credentials;
mod engine;
mod gateway;
mod lean;
mod providers;
mod specs;

pub use alerts::alert_webhook;
pub use chaos::{backup_manifest, chaos_experiment};
pub use config::config_toml;
pub use credentials::credential;
pub use engine::{debate_create, debate_query, receipt, ws_message};
pub use gateway::gateway_route;
pub use lean::lean_h1;
pub use providers::{provider_body, provider_stream};
pub use specs::slo_spec;

/// A fuzz target: any bytes in, a panic when a property does not hold.
pub type Target = fn(&[u8]);

/// Every target by name: what `tests/corpus.rs` replays and `fuzz/fuzz_targets/` must match.
pub const TARGETS: &[(&str, Target)] = &[
    ("debate_create", debate_create),
    ("debate_query", debate_query),
    ("ws_message", ws_message),
    ("credential", credential),
    ("config_toml", config_toml),
    ("slo_spec", slo_spec),
    ("chaos_experiment", chaos_experiment),
    ("backup_manifest", backup_manifest),
    ("gateway_route", gateway_route),
    ("provider_stream", provider_stream),
    ("provider_body", provider_body),
    ("receipt", receipt),
    ("alert_webhook", alert_webhook),
    ("lean_h1", lean_h1),
];

/// The first byte picks one of `choices` (a variant, a format); the rest is the input.
fn pick<'a, T: Copy>(data: &'a [u8], choices: &[T]) -> Option<(T, &'a [u8])> {
    let (first, rest) = data.split_first()?;
    Some((choices[usize::from(*first) % choices.len()], rest))
}
