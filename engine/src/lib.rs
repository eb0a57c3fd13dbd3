//! The aragora debate engine: an axum service that runs debates among agents and streams them.
//!
//! A debate's path through the engine, one module each:
//! `http::debates` (validate the request) → `orchestrator` (admit, queue, slot) →
//! `debate` (rounds, critiques, vote; every step persisted by `store` before `events`
//! announces it) → `http::ws` (replay from the store, then live, to subscribers).
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | typed settings from defaults, TOML and `ARAGORA_*`, validated all at once |
//! | [`model`] | debate states, typed event payloads, steps, records (plain data) |
//! | [`store`] | the storage trait and its SQLite / PostgreSQL implementation |
//! | [`schema`] | migrations: applied, pending, newer or changed; applied under the runbook's advisory lock |
//! | [`api_keys`] | the `api_keys` table behind `aragora_auth::KeyStore` (hashes only) |
//! | [`dr_log`] | the record of backups and DR drills (written by the chaos crate, read by `/api/drills` and `/metrics`) |
//! | [`retention`] | the Receipt Retention Scheduler: receipts and finished debates past retention deleted in batches, one replica at a time |
//! | [`error_log`] | this replica's recent errors (a bounded ring, secrets masked) for `/api/system/errors` |
//! | [`agents`] | the agent trait, the registry, offline agents, LLM providers, circuit breakers |
//! | [`debate`] | the state machine, resumable from the store |
//! | [`orchestrator`] | admission, concurrency slots, cancel, drain, resume, watchdog |
//! | [`receipts`] | HMAC-signed receipts of completed debates, with key rotation |
//! | [`events`] | live per-debate fan-out, and the `Relay` seam to other replicas |
//! | [`fanout`] | the Redis pub/sub `Relay`: the same fan-out across replicas |
//! | [`maintenance`] | maintenance mode: the shared row (migration 0006), its 1 s cache, what a refusal says |
//! | [`faults`] | faults injected for chaos experiments (slow or failing agents, database unavailable), with their expiry |
//! | [`webhooks`] | webhook subscriptions, the delivery outbox (written with the events) and the worker that signs, retries and dead-letters |
//! | [`http`] | REST, probes, metrics and WebSocket endpoints |
//! | [`server`] | process life: bind, connect, migrate, serve, drain |
//!
//! `engine/tests/` runs `debate`, `orchestrator` and the handlers in process (SQLite in a
//! temporary directory, offline agents behind a gate, `app(state).oneshot`, `/ws` on port 0); the real binary's
//! end-to-end tests are the root package's `tests/e2e`.

pub mod agents;
pub mod api_keys;
pub mod config;
pub mod debate;
pub mod dr_log;
pub mod error;
pub mod error_log;
pub mod events;
pub mod fanout;
pub mod faults;
pub mod http;
pub mod maintenance;
pub mod metrics;
pub mod model;
pub mod orchestrator;
pub mod receipts;
pub mod retention;
pub mod schema;
pub mod server;
pub mod store;
pub mod usage;
pub mod webhooks;

pub use config::{ConfigProblem, DbBackend, EngineConfig};
pub use server::{serve, serve_with, Bound, Extras, ServeError};
