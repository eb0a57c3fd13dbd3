//! Chaos engineering and disaster recovery: fault injection (a TCP fault proxy), chaos
//! experiments (`aragora chaos run`), and backups, restores and disaster-recovery drills of aragora's database, by hand
//! (`aragora backup ...`, `aragora drill ...`) or on a cron schedule inside `aragora up` /
//! `aragora serve`.
//!
//! A backup is two files in the backup directory: the artifact (SQLite: an online snapshot
//! taken with `VACUUM INTO` and compressed with zstd; PostgreSQL: `pg_dump -Fc` taken in an
//! exported snapshot) and its manifest (schema version, row counts, newest data, sha256 of the
//! artifact). With `ARAGORA_ENCRYPTION_KEY` set, the artifact is encrypted (AES-256-GCM) and the
//! manifest names the key's id. A restore refuses anything whose checksum, backend, schema
//! version or key does not fit, and checks the restored rows against the manifest. A drill restores the latest backup
//! into a scratch database, verifies it (rows, schema, every receipt's signature), starts an
//! engine on it, runs a smoke debate and measures RTO and RPO; the live database is only read
//! (and the drill's result recorded in its DR log).
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | `DrConfig`: backup directory, retention, schedules, RTO/RPO targets, the encryption key |
//! | [`encryption`] | backups encrypted at rest: the key, the artifact format, streaming AES-256-GCM (STREAM) |
//! | [`manifest`] | the manifest, backup ids, listing a backup directory, checksums |
//! | [`facts`] | what a database holds: schema version, row counts, newest data |
//! | [`sqlite`] / [`postgres`] | taking and restoring one backend's artifact |
//! | [`backup`] | create, list, verify, restore: the operations the CLI exposes |
//! | [`retention`] | pruning by count and age |
//! | [`drill`] | the DR drill and its report |
//! | [`cron`] | cron expressions: checking and parsing them as tokio-cron-scheduler does |
//! | [`schedule`] | cron jobs for backups and drills (tokio-cron-scheduler), run by the leader only, each tick claimed once |
//! | [`leader`] | the scheduler leader: a PostgreSQL advisory lock on its own connection, or a file lock on SQLite; the tick claims |
//! | [`time`] | wall-clock timestamps: Unix milliseconds, shown as RFC 3339 in UTC |
//! | [`progress`] | progress bars on a terminal, silence elsewhere |
//! | [`link_faults`] | link faults (what the fault proxy does to a TCP link): kinds, directions, windows, what active ones add up to |
//! | [`proxy`] | the fault proxy: a TCP relay that applies faults to live connections |
//! | [`proxy_api`] | its HTTP API (add and remove faults at run time, `/metrics`) |
//! | [`experiment`] | chaos experiments: the YAML model, probes, actions, the runner and its report |

pub mod backup;
pub mod config;
pub mod cron;
pub mod drill;
pub mod encryption;
pub mod error;
pub mod experiment;
pub mod facts;
pub mod leader;
pub mod link_faults;
pub mod manifest;
pub mod postgres;
pub mod progress;
pub mod proxy;
pub mod proxy_api;
pub mod retention;
pub mod schedule;
pub mod sqlite;
pub mod time;

pub use config::{DrConfig, SETTINGS};
pub use error::DrError;
