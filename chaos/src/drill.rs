//! The DR drill: prove that the latest backup restores into a working system, and how fast.
//!
//! Steps: read the primary's newest data (the RPO reference) → take the latest backup →
//! restore it into a scratch database (a new SQLite file beside the backups, or a new
//! PostgreSQL database on the primary's server), checking checksum, schema version and row
//! counts → verify every receipt's signature → start an engine on the copy and wait for
//! `/readyz` (RTO: restore start to ready) → run a smoke debate and check its receipt → stop
//! the engine, drop the scratch database → judge RTO and RPO against their targets → record
//! the drill in the primary's DR log.
//!
//! The engine runs in this process (`aragora_engine::serve`, as `aragora up` runs it), not as a
//! child `aragora serve`: a scheduled drill inside `up` needs no binary on a path, the drill
//! tests exactly the code that restores production, and a failed start comes back as an error
//! value instead of a log to scrape. It gets its own port, its own metrics registry, no Redis
//! (its events must not reach production watchers) and only offline agents (a drill must never
//! spend provider credits or call real LLMs with restored data).

use crate::backup::{self, Scratch, Target};
use crate::config::DrConfig;
use crate::error::DrError;
use crate::facts;
use crate::manifest::{self, Manifest};
use crate::progress;
use crate::time::Timestamp;
use aragora_engine::dr_log::DrillRecord;
use aragora_engine::receipts::{ReceiptKeys, KEY_FILE};
use aragora_engine::store::DebateStore;
use aragora_engine::EngineConfig;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the restored engine may take to report ready, and the smoke debate to finish.
const READY_PATIENCE: Duration = Duration::from_secs(120);
const SMOKE_PATIENCE: Duration = Duration::from_secs(60);

/// Why one step of a drill failed; the report keeps its message under the step's name.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// A backup, restore or DR-log operation failed (it says what to do).
    #[error(transparent)]
    Dr(#[from] DrError),
    /// The restored copy is wrong: receipts that do not verify, or no key to verify them.
    #[error("{0}")]
    Invalid(String),
    /// The restored engine said no: the smoke debate not accepted, or not completed.
    #[error("{0}")]
    Refused(String),
    /// Not ready, not finished or not stopped within its patience.
    #[error("{0}")]
    TimedOut(String),
    /// No answer, an answer that is not JSON, a read that failed, the engine's task failing.
    #[error("{0}")]
    Failed(String),
}

/// One step of a drill and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The outcome of a drill: `--output json` prints it, the DR log keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub id: String,
    /// `passed` or `failed`.
    pub status: String,
    pub backend: String,
    pub started_at: String,
    pub finished_at: String,
    pub backup_id: Option<String>,
    pub backup_created_at: Option<String>,
    /// The id of the key the backup was encrypted with (never the key); null when it is not
    /// encrypted.
    pub backup_key_id: Option<String>,
    /// Restore start to a ready engine on the restored copy; null when it never got ready.
    pub rto_seconds: Option<f64>,
    /// Newest primary data at drill start minus newest restored data; null when unknown.
    pub rpo_seconds: Option<f64>,
    pub rto_target_seconds: f64,
    pub rpo_target_seconds: f64,
    pub restored_rows: BTreeMap<String, i64>,
    pub receipts_verified: i64,
    pub smoke_debate_id: Option<String>,
    pub checks: Vec<Check>,
    /// Why the drill failed, one line per failed check; empty when it passed.
    pub failures: Vec<String>,
    /// Whether the drill was written to the primary's DR log.
    pub recorded: bool,
    #[serde(skip)]
    started_at_ms: i64,
    #[serde(skip)]
    finished_at_ms: i64,
}

/// A new drill id, as the DR log keys drills.
pub fn new_id() -> String {
    format!("drill-{}", uuid::Uuid::new_v4().simple())
}

impl DrillReport {
    /// A drill begun at `started_at_ms` against `(rto, rpo)` targets in seconds: failed until
    /// every check has passed, nothing measured yet.
    fn started(backend: &str, started_at_ms: i64, (rto_target, rpo_target): (f64, f64)) -> Self {
        Self {
            id: new_id(),
            status: "failed".into(),
            backend: backend.into(),
            started_at: Timestamp::from_ms(started_at_ms).to_string(),
            finished_at: String::new(),
            backup_id: None,
            backup_created_at: None,
            backup_key_id: None,
            rto_seconds: None,
            rpo_seconds: None,
            rto_target_seconds: rto_target,
            rpo_target_seconds: rpo_target,
            restored_rows: BTreeMap::new(),
            receipts_verified: 0,
            smoke_debate_id: None,
            checks: Vec::new(),
            failures: Vec::new(),
            recorded: false,
            started_at_ms,
            finished_at_ms: started_at_ms,
        }
    }
}

impl DrillReport {
    pub fn passed(&self) -> bool {
        self.status == "passed"
    }

    fn check<T, E: std::fmt::Display>(
        &mut self,
        name: &str,
        result: Result<T, E>,
        detail: impl FnOnce(&T) -> String,
    ) -> Option<T> {
        match result {
            Ok(value) => {
                self.checks.push(Check {
                    name: name.into(),
                    ok: true,
                    detail: detail(&value),
                });
                Some(value)
            }
            Err(err) => {
                self.fail(name, err.to_string());
                None
            }
        }
    }

    fn fail(&mut self, name: &str, detail: String) {
        self.failures.push(format!("{name}: {detail}"));
        self.checks.push(Check {
            name: name.into(),
            ok: false,
            detail,
        });
    }

    /// Readable lines for a terminal.
    pub fn summary(&self) -> String {
        let seconds =
            |value: Option<f64>| value.map_or("unknown".to_string(), |s| format!("{s:.2} s"));
        let mut lines = vec![format!(
            "DR drill {}: {} (backup {}, {})",
            self.id,
            self.status.to_uppercase(),
            self.backup_id.as_deref().unwrap_or("none"),
            self.backend
        )];
        lines.push(format!(
            "  RTO {} (target {} s)   RPO {} (target {} s)",
            seconds(self.rto_seconds),
            self.rto_target_seconds,
            seconds(self.rpo_seconds),
            self.rpo_target_seconds
        ));
        for check in &self.checks {
            lines.push(format!(
                "  [{}] {}: {}",
                if check.ok { "ok" } else { "FAILED" },
                check.name,
                check.detail
            ));
        }
        lines.join("\n")
    }

    fn record(&self) -> DrillRecord {
        DrillRecord {
            id: self.id.clone(),
            started_at_ms: self.started_at_ms,
            finished_at_ms: self.finished_at_ms,
            status: self.status.clone(),
            backup_id: self.backup_id.clone(),
            rto_seconds: self.rto_seconds,
            rpo_seconds: self.rpo_seconds,
            rto_target_seconds: self.rto_target_seconds,
            rpo_target_seconds: self.rpo_target_seconds,
            report: serde_json::to_string(self).unwrap_or_default(),
        }
    }
}

/// The steps of a drill, in order, as a person reads them (`GET /api/drills/run`'s `step`).
/// A failed step skips those that need it; the drill still ends with the last ones.
pub const STEPS: &[&str] = &[
    "reading the primary's newest data",
    "finding the latest backup",
    "creating a scratch database",
    "restoring the backup into it",
    "verifying every receipt's signature",
    "starting an engine on the restored copy",
    "running a smoke debate on it",
    "stopping the restored engine",
    "dropping the scratch database",
    "judging RTO and RPO and recording the drill",
];

/// Hears each step of a drill begin: its index in [`STEPS`].
pub type OnStep<'a> = &'a (dyn Fn(usize) + Send + Sync);

/// Where a drill says which step it is at: its spinner and whoever listens.
struct Progress<'a> {
    bar: indicatif::ProgressBar,
    on_step: OnStep<'a>,
}

impl Progress<'_> {
    fn step(&self, index: usize) {
        self.bar.set_message(format!("DR drill: {}", STEPS[index]));
        (self.on_step)(index);
    }
}

/// Runs a drill; never panics on a broken backup, it reports it.
pub async fn run(engine: &EngineConfig, dr: &DrConfig, visible: bool) -> DrillReport {
    run_observed(engine, dr, visible, None, &|_| {}).await
}

/// [`run`] as drill `id` (a new one when None), telling `on_step` as each step begins.
pub async fn run_observed(
    engine: &EngineConfig,
    dr: &DrConfig,
    visible: bool,
    id: Option<String>,
    on_step: OnStep<'_>,
) -> DrillReport {
    let started_at_ms = Timestamp::now().ms();
    let mut report = DrillReport::started(
        engine.db_backend.as_str(),
        started_at_ms,
        (dr.rto_target_secs as f64, dr.rpo_target_secs as f64),
    );
    if let Some(id) = id {
        report.id = id;
    }
    let bar = Progress {
        bar: progress::spinner("DR drill", visible),
        on_step,
    };
    bar.step(0);
    let primary_newest = report.check(
        "read the primary's newest data",
        primary_newest_ms(engine).await,
        |newest| match newest {
            Some(ms) => format!("newest debate change {}", Timestamp::from_ms(*ms)),
            None => "the primary holds no debates".into(),
        },
    );
    let dir = dr.backup_dir(engine);
    bar.step(1);
    if let Some(manifest) = report.check("find the latest backup", manifest::latest(&dir), |m| {
        format!("{} taken {}", m.id, m.created_at)
    }) {
        report.backup_id = Some(manifest.id.clone());
        report.backup_created_at = Some(manifest.created_at.clone());
        report.backup_key_id = manifest.encryption.as_ref().map(|e| e.key_id.clone());
        exercise(engine, dr, &dir, &manifest, &mut report, &bar, visible).await;
        if let Some(Some(primary)) = primary_newest {
            let restored = manifest.newest_data_at_ms.unwrap_or(manifest.created_at_ms);
            report.rpo_seconds = Some(primary.saturating_sub(restored).max(0) as f64 / 1000.0);
        } else if primary_newest.is_some() {
            report.rpo_seconds = Some(0.0);
        }
    }
    bar.step(9);
    bar.bar.finish_and_clear();
    judge(&mut report);
    let finished = Timestamp::now();
    report.finished_at_ms = finished.ms();
    report.finished_at = finished.to_string();
    report.status = if report.failures.is_empty() {
        "passed"
    } else {
        "failed"
    }
    .into();
    match record(engine, &report).await {
        Ok(()) => report.recorded = true,
        Err(err) => tracing::warn!(error = %err, "the drill ran but is not in the DR log"),
    }
    report
}

async fn primary_newest_ms(engine: &EngineConfig) -> Result<Option<i64>, DrError> {
    let mut conn = facts::connect(&backup::primary_url(engine, "ro")?).await?;
    let newest = facts::newest_data_ms(&mut conn).await;
    use sqlx::Connection;
    let _ = conn.close().await;
    newest
}

/// Restore, verify, start, smoke, stop, clean up: everything that needs the scratch database.
async fn exercise(
    engine: &EngineConfig,
    dr: &DrConfig,
    dir: &Path,
    manifest: &Manifest,
    report: &mut DrillReport,
    bar: &Progress<'_>,
    visible: bool,
) {
    let restore_started = Instant::now();
    bar.step(2);
    let Some(scratch) = report.check(
        "create a scratch database",
        Scratch::create(engine, dir, ".drill-").await,
        |s| s.target.describe(),
    ) else {
        return;
    };
    bar.step(3);
    let restored = match dr.backup_key() {
        Ok(key) => {
            backup::restore_manifest(manifest, dir, &scratch.target, false, key.as_ref(), visible)
                .await
        }
        Err(err) => Err(err),
    };
    let decrypted = match &manifest.encryption {
        Some(encryption) => format!("decrypted with key {}, ", encryption.key_id),
        None => String::new(),
    };
    if let Some(facts) = report.check(
        "restore, schema version and row counts",
        restored,
        |facts| {
            format!(
                "{decrypted}schema version {}, rows {}",
                facts.schema_version,
                facts
                    .row_counts
                    .iter()
                    .map(|(t, n)| format!("{t}={n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        },
    ) {
        report.restored_rows = facts.row_counts;
        bar.step(4);
        let verified = verify_receipts(engine, &scratch.url()).await;
        if let Some(count) = report.check("every receipt's signature", verified, |n| {
            format!("{n} receipts verified")
        }) {
            report.receipts_verified = count;
        }
        bar.step(5);
        smoke(engine, &scratch, restore_started, report, bar).await;
    }
    bar.step(8);
    let cleaned = scratch.drop(engine).await;
    report.check("drop the scratch database", cleaned, |_| "dropped".into());
}

/// Which keys verify the primary's receipts, without generating one (a drill changes nothing).
fn receipt_keys(engine: &EngineConfig) -> Result<Option<ReceiptKeys>, DrillError> {
    ReceiptKeys::existing(
        engine.receipt_signing_key.as_deref(),
        &engine.receipt_signing_key_previous,
        &engine.data_dir,
    )
    .map_err(|err| DrillError::Failed(err.to_string()))
}

async fn verify_receipts(engine: &EngineConfig, url: &str) -> Result<i64, DrillError> {
    use sqlx::Row;
    let mut conn = facts::connect(url).await?;
    let rows = sqlx::query("SELECT debate_id, body FROM receipts ORDER BY debate_id")
        .fetch_all(&mut conn)
        .await
        .map_err(|err| DrillError::Failed(format!("cannot read the restored receipts: {err}")));
    use sqlx::Connection;
    let _ = conn.close().await;
    let rows = rows?;
    if rows.is_empty() {
        return Ok(0);
    }
    let keys = receipt_keys(engine)?.ok_or_else(|| {
        DrillError::Invalid(format!(
            "{} receipts to verify but no signing key: set ARAGORA_RECEIPT_SIGNING_KEY (or run the drill with the data directory holding {KEY_FILE})",
            rows.len()
        ))
    })?;
    let mut bad = Vec::new();
    for row in &rows {
        let read = |err: sqlx::Error| DrillError::Failed(err.to_string());
        let debate_id: String = row.try_get("debate_id").map_err(read)?;
        let body: String = row.try_get("body").map_err(read)?;
        match keys.verify_json(&body) {
            Ok((receipt, _)) if receipt.debate_id == debate_id => {}
            Ok((receipt, _)) => bad.push(format!(
                "{debate_id} (the receipt names {})",
                receipt.debate_id
            )),
            Err(err) => bad.push(format!("{debate_id} ({err})")),
        }
    }
    if bad.is_empty() {
        Ok(rows.len() as i64)
    } else {
        Err(DrillError::Invalid(format!(
            "{} of {} receipts do not verify: {}",
            bad.len(),
            rows.len(),
            bad.join(", ")
        )))
    }
}

/// The engine configuration for the restored copy: its own port and data directory, no
/// Redis, offline agents only, a short drain, and an admin token of its own (the smoke
/// debate's credential; it lives and dies with the drill and is never shown).
fn drill_engine_config(engine: &EngineConfig, scratch: &Scratch) -> Result<EngineConfig, DrError> {
    let mut config = engine.clone();
    config.auth.api_token = Some(hex::encode(rand::random::<[u8; 32]>()));
    config.auth.anonymous = Default::default();
    config.host = "127.0.0.1".into();
    config.api_port = 0;
    config.ws_port = 0;
    config.data_dir = scratch.dir.path().to_path_buf();
    config.redis_url = None;
    config.providers.clear();
    config.agents.clear();
    config.db_pool_size = 2;
    config.db_connect_timeout_secs = 10;
    config.drain_timeout_secs = 1;
    // A backup older than this binary's schema is migrated on the scratch copy (never the
    // primary), also when the primary's engines leave migrations to `aragora migrate up`.
    config.auto_migrate = true;
    if let Target::Postgres(url) = &scratch.target {
        config.database_url = Some(url.clone());
    }
    // The restored engine has the primary's key ring (a generated key is part of it even when
    // a key is configured), so receipts verify alike.
    let key_file = engine.data_dir.join(KEY_FILE);
    if key_file.exists() {
        let copy = config.data_dir.join(KEY_FILE);
        std::fs::copy(&key_file, &copy).map_err(DrError::io(&copy))?;
    }
    Ok(config)
}

/// Starts the engine on the copy, measures RTO at `/readyz`, runs and checks a smoke debate,
/// stops the engine.
async fn smoke(
    engine: &EngineConfig,
    scratch: &Scratch,
    restore_started: Instant,
    report: &mut DrillReport,
    bar: &Progress<'_>,
) {
    let Some(config) = report.check(
        "configure the restored engine",
        drill_engine_config(engine, scratch),
        |_| "offline agents, no Redis".into(),
    ) else {
        return;
    };
    let mut credential = reqwest::header::HeaderMap::new();
    if let Some(Ok(mut value)) = config
        .auth
        .api_token
        .as_ref()
        .map(|token| reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")))
    {
        value.set_sensitive(true);
        credential.insert(reqwest::header::AUTHORIZATION, value);
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(aragora_engine::serve(
        config,
        async move {
            let _ = stop_rx.await;
        },
        move |bound| {
            let _ = bound_tx.send(bound);
        },
    ));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .default_headers(credential)
        .build()
        .unwrap_or_default();
    let base = match bound_rx.await {
        Ok(bound) => Some(format!("http://127.0.0.1:{}", bound.api.port())),
        Err(_) => None,
    };
    let ready = match &base {
        Some(base) => wait_ready(&http, base).await,
        None => Err(DrillError::Failed(
            "the engine did not start listening".to_string(),
        )),
    };
    let rto = restore_started.elapsed().as_secs_f64();
    let ready = report.check("engine ready on the restored copy", ready, |_| {
        format!("ready {rto:.2} s after the restore started")
    });
    if ready.is_some() {
        report.rto_seconds = Some(rto);
        let base = base.unwrap_or_default();
        bar.step(6);
        let debate = smoke_debate(&http, &base).await;
        if let Some(id) = report.check(
            "smoke debate completes with a valid receipt",
            debate,
            |id| format!("debate {id}"),
        ) {
            report.smoke_debate_id = Some(id);
        }
    }
    bar.step(7);
    let _ = stop_tx.send(());
    let stopped = match tokio::time::timeout(Duration::from_secs(30), server).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(err))) => Err(DrillError::Failed(format!(
            "the restored engine failed: {err}"
        ))),
        Ok(Err(err)) => Err(DrillError::Failed(format!(
            "the restored engine's task failed: {err}"
        ))),
        Err(_) => Err(DrillError::TimedOut(
            "the restored engine did not stop within 30 s".to_string(),
        )),
    };
    report.check("restored engine stopped", stopped, |_| "stopped".into());
}

/// Polls `/readyz` until 200 (a deadline, not a sleep: it answers as soon as it can).
async fn wait_ready(http: &reqwest::Client, base: &str) -> Result<(), DrillError> {
    let deadline = Instant::now() + READY_PATIENCE;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match http.get(format!("{base}/readyz")).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                last = body["reason"].as_str().unwrap_or("not ready").to_string();
            }
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(DrillError::TimedOut(format!(
        "not ready within {} s: {last}",
        READY_PATIENCE.as_secs()
    )))
}

/// Sends `request` and reads its JSON answer; errors name `what` was being done.
async fn call(request: reqwest::RequestBuilder, what: &str) -> Result<(u16, Value), DrillError> {
    let response = request.send().await.map_err(|err| {
        let message = format!("{what}: {err}");
        if err.is_timeout() {
            DrillError::TimedOut(message)
        } else {
            DrillError::Failed(message)
        }
    })?;
    let status = response.status().as_u16();
    let body = response
        .json()
        .await
        .map_err(|err| DrillError::Failed(format!("{what}: the answer is not JSON ({err})")))?;
    Ok((status, body))
}

async fn smoke_debate(http: &reqwest::Client, base: &str) -> Result<String, DrillError> {
    let topic = "DR drill smoke debate: does the restored copy serve?";
    // A backup taken in a maintenance window (as the Self-Hosted Guide's 7.4 takes it) carries
    // maintenance mode on; the scratch copy is the drill's own, so it lifts it there.
    let (status, body) = call(
        http.post(format!("{base}/api/admin/maintenance/disable")),
        "lifting maintenance mode on the copy",
    )
    .await?;
    if status != 200 {
        return Err(DrillError::Refused(format!(
            "maintenance mode could not be lifted on the copy ({status}): {body}"
        )));
    }
    let (status, body) = call(
        http.post(format!("{base}/api/debates"))
            .json(&json!({"topic": topic, "rounds": 1})),
        "starting the debate",
    )
    .await?;
    let id = body["debate_id"]
        .as_str()
        .filter(|_| status == 202)
        .ok_or_else(|| {
            DrillError::Refused(format!("the debate was not accepted ({status}): {body}"))
        })?
        .to_string();
    let deadline = Instant::now() + SMOKE_PATIENCE;
    let final_status = loop {
        let (_, record) = call(
            http.get(format!("{base}/api/debates/{id}")),
            "following the debate",
        )
        .await?;
        let state = record["status"].as_str().unwrap_or_default().to_string();
        if ["completed", "failed", "cancelled", "timed_out"].contains(&state.as_str()) {
            break state;
        }
        if Instant::now() >= deadline {
            return Err(DrillError::TimedOut(format!(
                "debate {id} still {state} after {} s",
                SMOKE_PATIENCE.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    if final_status != "completed" {
        return Err(DrillError::Refused(format!(
            "debate {id} ended {final_status}"
        )));
    }
    let (_, receipt) = call(
        http.get(format!("{base}/api/debates/{id}/receipt")),
        "fetching the receipt",
    )
    .await?;
    let (_, verdict) = call(
        http.post(format!("{base}/api/receipts/verify"))
            .json(&receipt),
        "verifying the receipt",
    )
    .await?;
    if verdict["valid"] != true {
        return Err(DrillError::Invalid(format!(
            "debate {id}'s receipt does not verify: {verdict}"
        )));
    }
    Ok(id)
}

/// Adds the RTO and RPO target checks.
fn judge(report: &mut DrillReport) {
    if let Some(rto) = report.rto_seconds {
        let target = report.rto_target_seconds;
        let within = if rto <= target {
            Ok(())
        } else {
            Err(format!(
                "{rto:.2} s exceeds the target of {target} s (ARAGORA_RTO_TARGET_SECS)"
            ))
        };
        report.check("RTO within target", within, |_| {
            format!("{rto:.2} s <= {target} s")
        });
    }
    if let Some(rpo) = report.rpo_seconds {
        let target = report.rpo_target_seconds;
        let within = if rpo <= target {
            Ok(())
        } else {
            Err(format!("the restored data is {rpo:.1} s older than the primary's, over the target of {target} s (ARAGORA_RPO_TARGET_SECS): back up more often (ARAGORA_BACKUP_SCHEDULE)"))
        };
        report.check("RPO within target", within, |_| {
            format!("{rpo:.1} s <= {target} s")
        });
    }
}

async fn record(engine: &EngineConfig, report: &DrillReport) -> Result<(), DrError> {
    let store = backup::dr_log(engine).await?;
    let recorded = store.record_drill(&report.record()).await;
    store.close().await;
    recorded.map_err(|err| backup::dr_log_error("recording the drill in the DR log", err))
}

/// The newest `limit` drills from the primary's DR log.
pub async fn history(engine: &EngineConfig, limit: i64) -> Result<Vec<DrillRecord>, DrError> {
    let store = backup::dr_log(engine).await?;
    let drills = store.drills(limit).await;
    store.close().await;
    drills.map_err(|err| backup::dr_log_error("reading the drill history", err))
}
#[cfg(test)]
mod tests {
    use super::*;

    fn measured(rto: f64, rpo: f64) -> DrillReport {
        DrillReport {
            backup_id: Some("b".into()),
            rto_seconds: Some(rto),
            rpo_seconds: Some(rpo),
            ..DrillReport::started("sqlite", 0, (3600.0, 300.0))
        }
    }

    #[tokio::test]
    async fn an_engine_that_refuses_the_smoke_debate_is_told_from_one_not_there() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route(
                "/api/admin/maintenance/disable",
                axum::routing::post(|| async { axum::Json(json!({"enabled": false})) }),
            )
            .route(
                "/api/debates",
                axum::routing::post(|| async {
                    (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(
                            json!({"error": {"code": "unavailable", "message": "draining"}}),
                        ),
                    )
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let http = reqwest::Client::new();
        let refused = smoke_debate(&http, &base).await.unwrap_err();
        assert!(matches!(refused, DrillError::Refused(_)), "{refused:?}");
        assert!(refused.to_string().contains("503"), "{refused}");

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let nowhere = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let failed = smoke_debate(&http, &nowhere).await.unwrap_err();
        assert!(matches!(failed, DrillError::Failed(_)), "{failed:?}");
    }

    #[test]
    fn targets_met_add_passing_checks() {
        let mut report = measured(12.0, 299.0);
        judge(&mut report);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(report.checks.len(), 2);
    }

    #[test]
    fn a_missed_target_fails_and_names_the_setting() {
        let mut report = measured(3601.0, 301.0);
        judge(&mut report);
        assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
        assert!(report.failures[0].contains("ARAGORA_RTO_TARGET_SECS"));
        assert!(report.failures[1].contains("ARAGORA_RPO_TARGET_SECS"));
        assert!(
            report.failures[1].contains("ARAGORA_BACKUP_SCHEDULE"),
            "says what to do"
        );
    }
}
