//! Who runs the scheduled work: one leader among every process that runs schedules on one
//! database (`aragora control` replicas, `aragora serve` with `ARAGORA_DR_SCHEDULER`, `aragora
//! up`), so two replicas never take the same backup, run the same drill or the same chaos
//! experiment twice.
//!
//! | backend | the lock | lost when |
//! |---|---|---|
//! | PostgreSQL | session-level advisory lock [`SCHEDULER_LOCK_ID`], taken with `pg_try_advisory_lock` on a connection of its own (not from a pool, which could hand the session to other work or close it) | the connection breaks (database restart, network, `pg_terminate_backend`), or a confirmation fails or is late |
//! | SQLite | an exclusive `flock` on [`LOCK_FILE`] in the data directory, beside the database | never while the process lives (the kernel releases it when the process ends, `kill -9` included) |
//!
//! Followers try the lock every [`RETRY`]. The PostgreSQL leader confirms every
//! [`CONFIRM_EVERY`] that its session still holds the lock (a query on the lock's own
//! connection, answered within [`CONFIRM_TIMEOUT`]); a failed or late confirmation makes it a
//! follower at once. New work starts only on a confirmation younger than [`CONFIRMED_FOR`]
//! ([`Leadership::may_start`]), so a leader that was paused, or whose network went quiet,
//! starts nothing it cannot vouch for. The lock's session is set to end on the server after
//! [`IDLE_SESSION_TIMEOUT`] without a query, so a leader cut off from the database (no reset
//! ever reaches the server) frees the lock for a follower, which it does only after the cut-off
//! leader has stopped starting work (`CONFIRMED_FOR` < `IDLE_SESSION_TIMEOUT`). A process that
//! lost the lock waits [`STAND_DOWN`] before it stands again, so a follower with a healthy
//! connection takes over rather than the one whose connection just failed.
//!
//! A run in progress when leadership is lost **finishes**: its tick is claimed in
//! `scheduled_runs` already (no one else runs it), a backup or drill only writes its own
//! artifact, scratch database and DR-log row, and aborting is what could do harm (a drill cut
//! off before it drops its scratch database, a chaos experiment cut off before its rollbacks).
//! A run whose database went away fails on its own, and says so.
//!
//! Every tick is also claimed in the database before it runs ([`Leadership::claim`], table
//! `scheduled_runs`, keyed by job and scheduled time), so even two processes that both believe
//! they lead for a moment, or a new leader whose (scaled) clock lags the old one's, run a tick
//! once.

use crate::time::Timestamp;
use aragora_engine::config::DbBackend;
use aragora_engine::store::{DebateStore, SqlStore};
use aragora_engine::EngineConfig;
use serde::Serialize;
use sqlx::{AnyConnection, Connection, Row};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The advisory lock the scheduler leader holds on PostgreSQL. Distinct from the migration
/// lock (`aragora_engine::store::MIGRATION_LOCK_ID`, 2089872453): a replica migrating at its
/// start must never be mistaken for, or wait behind, the scheduler's leader.
pub const SCHEDULER_LOCK_ID: i64 = 2_089_872_454;

/// The file locked by the leader on SQLite, in the data directory (beside `aragora.db`, so
/// every process on that database meets the same file).
pub const LOCK_FILE: &str = "scheduler.lock";

/// The lock session's `application_name` starts so, then the process id (`host:pid`).
const APPLICATION_PREFIX: &str = "aragora-scheduler:";

/// How often a follower tries the lock.
pub const RETRY: Duration = Duration::from_secs(2);
/// How often the PostgreSQL leader confirms its lock.
pub const CONFIRM_EVERY: Duration = Duration::from_secs(1);
/// A confirmation (or a try of the lock) that takes longer has failed.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a confirmation vouches for starting new work.
pub const CONFIRMED_FOR: Duration = Duration::from_secs(3);
/// The lock session's `idle_session_timeout`: the server ends it, freeing the lock, after this
/// long without a query from the leader (which queries every second while it can).
pub const IDLE_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a process that lost the lock waits before it stands again.
pub const STAND_DOWN: Duration = Duration::from_secs(5);

/// Leader or follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Leader,
    Follower,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
        }
    }
}

/// What `/healthz` of `aragora control` shows about the election.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub role: Role,
    /// This process, as the others see it (`host:pid`).
    pub id: String,
    /// `postgres_advisory_lock` or `file_lock`.
    pub lock: &'static str,
    /// When this process last changed role (RFC 3339).
    pub since: String,
    /// Why it has the role it has.
    pub reason: String,
    /// Who leads, as last seen (this process when it leads).
    pub leader: Option<String>,
}

struct State {
    role: Role,
    since: Timestamp,
    reason: String,
    leader: Option<String>,
    /// The last confirmation of the lock; `None` for a lock that cannot be lost (a file lock).
    confirmed_at: Option<Instant>,
}

struct Shared {
    id: String,
    lock: &'static str,
    state: Mutex<State>,
    /// `aragora_control_leader`, once a registry has it ([`Leadership::export_to`]).
    gauge: Mutex<Option<prometheus::IntGauge>>,
    engine: EngineConfig,
}

/// A handle on this process's candidacy: its role, the gate for new work, the tick claims.
/// Cloned freely; [`Leadership::stop`] ends the campaign and releases the lock.
#[derive(Clone)]
pub struct Leadership {
    shared: Arc<Shared>,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

/// `host:pid`: who a leader is, in logs, in `pg_stat_activity` and in the lock file.
fn process_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

impl Leadership {
    /// Starts campaigning for the schedules of `engine`'s database; the gauge
    /// `aragora_control_leader` goes into `registry` when one is given.
    pub fn start(engine: &EngineConfig, registry: Option<&prometheus::Registry>) -> Leadership {
        let lock = match engine.db_backend {
            DbBackend::Postgres => "postgres_advisory_lock",
            DbBackend::Sqlite => "file_lock",
        };
        let shared = Arc::new(Shared {
            id: process_id(),
            lock,
            state: Mutex::new(State {
                role: Role::Follower,
                since: Timestamp::now(),
                reason: "starting".into(),
                leader: None,
                confirmed_at: None,
            }),
            gauge: Mutex::new(None),
            engine: engine.clone(),
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let campaign = shared.clone();
        let task = match engine.db_backend {
            DbBackend::Postgres => {
                let url = engine.database_url();
                tokio::spawn(async move { campaign_postgres(&campaign, &url, stopped).await })
            }
            DbBackend::Sqlite => {
                let path = engine.data_dir.join(LOCK_FILE);
                tokio::spawn(async move { campaign_file(&campaign, &path, stopped).await })
            }
        };
        tracing::info!(id = %shared.id, lock, "standing for scheduler leader");
        let leadership = Leadership {
            shared,
            stop: Arc::new(stop),
            task: Arc::new(Mutex::new(Some(task))),
        };
        if let Some(registry) = registry {
            leadership.export_to(registry);
        }
        leadership
    }

    /// Registers `aragora_control_leader` in `registry` (once; the engine's registry exists
    /// only after the schedules of `serve` and `up` have started) and keeps it current.
    pub fn export_to(&self, registry: &prometheus::Registry) {
        let gauge = aragora_telemetry::catalogue::CONTROL_LEADER.gauge(registry);
        let mut slot = self.shared.gauge.lock().unwrap_or_else(|e| e.into_inner());
        gauge.set(i64::from(self.role() == Role::Leader));
        *slot = Some(gauge);
    }

    /// This process's id (`host:pid`).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    pub fn role(&self) -> Role {
        self.shared.lock_state().role
    }

    pub fn status(&self) -> Status {
        let state = self.shared.lock_state();
        Status {
            role: state.role,
            id: self.shared.id.clone(),
            lock: self.shared.lock,
            since: state.since.to_string(),
            reason: state.reason.clone(),
            leader: state.leader.clone(),
        }
    }

    /// Whether new work may start now: this process leads and its lock was confirmed within
    /// [`CONFIRMED_FOR`]. The refusal says why not.
    pub fn may_start(&self) -> Result<(), String> {
        let state = self.shared.lock_state();
        if state.role != Role::Leader {
            return Err(match &state.leader {
                Some(leader) => format!("{leader} leads the schedules"),
                None => format!("not the scheduler leader ({})", state.reason),
            });
        }
        match state.confirmed_at {
            Some(at) if at.elapsed() > CONFIRMED_FOR => Err(format!(
                "the scheduler lock was last confirmed {:.1} s ago; no new work until it is again",
                at.elapsed().as_secs_f64()
            )),
            _ => Ok(()),
        }
    }

    /// Claims the run of `job` scheduled for `tick` in the database: `Ok(true)` to run it,
    /// `Ok(false)` (with who has it) when it was claimed already, `Err` when the claim could not
    /// be written (no database, a schema before migration 7).
    pub async fn claim(&self, job: &str, tick_ms: i64) -> Result<Result<(), String>, String> {
        let store = self.claims().await?;
        let claimed = store
            .claim_scheduled_run(job, tick_ms, &self.shared.id)
            .await
            .map_err(|err| err.to_string());
        let answer = match claimed {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                let holder = store
                    .scheduled_run_holder(job, tick_ms)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "another process".into());
                Ok(Err(holder))
            }
            Err(err) => Err(err),
        };
        store.close().await;
        answer
    }

    /// Notes that a claimed run ended (logged when it cannot be).
    pub async fn finish(&self, job: &str, tick_ms: i64) {
        let finished = match self.claims().await {
            Ok(store) => {
                let finished = store
                    .finish_scheduled_run(job, tick_ms)
                    .await
                    .map_err(|e| e.to_string());
                store.close().await;
                finished
            }
            Err(err) => Err(err),
        };
        if let Err(err) = finished {
            tracing::warn!(job, error = %err, "cannot note the end of a scheduled run");
        }
    }

    async fn claims(&self) -> Result<SqlStore, String> {
        let url =
            crate::backup::primary_url(&self.shared.engine, "rw").map_err(|e| e.to_string())?;
        SqlStore::connect(self.shared.engine.db_backend, &url, 1)
            .await
            .map_err(|err| err.to_string())
    }

    /// Ends the campaign: a leader releases its lock (a follower takes over within [`RETRY`]).
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Shared {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Becomes the leader; logged.
    fn lead(&self, confirmed: Option<Instant>) {
        let mut state = self.lock_state();
        let was = state.role;
        state.role = Role::Leader;
        state.since = Timestamp::now();
        state.reason = "holds the scheduler lock".into();
        state.leader = Some(self.id.clone());
        state.confirmed_at = confirmed;
        drop(state);
        self.set_gauge(1);
        if was != Role::Leader {
            tracing::warn!(id = %self.id, lock = self.lock, role = "leader", "leadership: this process now leads the schedules (backups, drills, chaos experiments)");
        }
    }

    /// Becomes (or stays) a follower for `reason`; a change of role or of the leader seen is
    /// logged, the rest is not (a follower retries every two seconds).
    fn follow(&self, reason: String, leader: Option<String>) {
        let mut state = self.lock_state();
        let was = state.role;
        let changed_leader = state.leader != leader;
        state.role = Role::Follower;
        if was != Role::Follower {
            state.since = Timestamp::now();
        }
        state.reason = reason.clone();
        state.leader = leader.clone();
        state.confirmed_at = None;
        drop(state);
        self.set_gauge(0);
        let leader = leader.as_deref().unwrap_or("unknown");
        if was == Role::Leader {
            tracing::error!(id = %self.id, lock = self.lock, role = "follower", reason = %reason, "leadership lost: this process stops starting scheduled work at once; a run in progress finishes");
        } else if changed_leader {
            tracing::info!(id = %self.id, lock = self.lock, role = "follower", leader, reason = %reason, "leadership: following");
        }
    }

    fn set_gauge(&self, value: i64) {
        let gauge = self.gauge.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(gauge) = gauge.as_ref() {
            gauge.set(value);
        }
    }

    fn confirmed(&self) {
        self.lock_state().confirmed_at = Some(Instant::now());
    }
}

/// Waits `period`, or less when the campaign is stopped; true when stopped.
async fn pause(period: Duration, stopped: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    if *stopped.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(period) => *stopped.borrow(),
        _ = stopped.changed() => true,
    }
}

/// The lock's connection string: the configured one, named in `pg_stat_activity` as the
/// scheduler of this process, so followers (and operators) can see who leads.
fn lock_url(url: &str, id: &str) -> String {
    let name: String = format!("{APPLICATION_PREFIX}{id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_:".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={name}")
}

/// The lock's own connection. Its errors are shown as sqlx words them: they name the server,
/// never the connection string's password.
async fn connect(url: &str) -> Result<AnyConnection, String> {
    sqlx::any::install_default_drivers();
    let connected = tokio::time::timeout(CONFIRM_TIMEOUT * 2, AnyConnection::connect(url)).await;
    let mut conn = match connected {
        Ok(Ok(conn)) => conn,
        Ok(Err(err)) => return Err(err.to_string()),
        Err(_) => return Err("connecting to PostgreSQL timed out".into()),
    };
    let idle = format!(
        "SET idle_session_timeout = '{}s'",
        IDLE_SESSION_TIMEOUT.as_secs()
    );
    if let Err(err) = sqlx::query(&idle).execute(&mut conn).await {
        // PostgreSQL before 14: a leader cut off by the network then holds the lock until the
        // server's TCP keepalive ends its session.
        tracing::warn!(error = %err, "cannot set idle_session_timeout on the scheduler lock's session (PostgreSQL 14 or later has it)");
    }
    Ok(conn)
}

async fn try_lock(conn: &mut AnyConnection) -> Result<bool, String> {
    let query = sqlx::query("SELECT pg_try_advisory_lock($1) AS got")
        .bind(SCHEDULER_LOCK_ID)
        .fetch_one(&mut *conn);
    match tokio::time::timeout(CONFIRM_TIMEOUT, query).await {
        Ok(Ok(row)) => row.try_get::<bool, _>("got").map_err(|e| e.to_string()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!(
            "the lock query took longer than {} s",
            CONFIRM_TIMEOUT.as_secs()
        )),
    }
}

/// Whether this session holds the lock, by `pg_locks` (a bigint key shows as classid: high
/// half, objid: low half, objsubid 1).
async fn still_held(conn: &mut AnyConnection) -> Result<bool, String> {
    let query = sqlx::query(
        "SELECT COUNT(*)::bigint AS held FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND pid = pg_backend_pid() AND objsubid = 1 AND classid::bigint = $1 AND objid::bigint = $2",
    )
    .bind(SCHEDULER_LOCK_ID >> 32)
    .bind(SCHEDULER_LOCK_ID & 0xffff_ffff)
    .fetch_one(&mut *conn);
    match tokio::time::timeout(CONFIRM_TIMEOUT, query).await {
        Ok(Ok(row)) => Ok(row.try_get::<i64, _>("held").map_err(|e| e.to_string())? > 0),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!(
            "the lock was not confirmed within {} s",
            CONFIRM_TIMEOUT.as_secs()
        )),
    }
}

/// Who holds the lock, as `pg_stat_activity` names it (`aragora-scheduler:host:pid`).
async fn holder(conn: &mut AnyConnection) -> Option<String> {
    let query = sqlx::query(
        "SELECT a.application_name AS name, l.pid::bigint AS pid FROM pg_locks l \
         LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
         AND l.classid::bigint = $1 AND l.objid::bigint = $2 \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1",
    )
    .bind(SCHEDULER_LOCK_ID >> 32)
    .bind(SCHEDULER_LOCK_ID & 0xffff_ffff)
    .fetch_optional(&mut *conn);
    let row = tokio::time::timeout(CONFIRM_TIMEOUT, query)
        .await
        .ok()?
        .ok()??;
    let name: Option<String> = row.try_get("name").ok().flatten();
    let pid: i64 = row.try_get("pid").ok()?;
    Some(match name {
        Some(name) if !name.is_empty() => {
            let name = name.strip_prefix(APPLICATION_PREFIX).unwrap_or(&name);
            name.to_string()
        }
        _ => format!("backend pid {pid}"),
    })
}

/// Why the leader's hold ended.
enum Ended {
    Stopped,
    Lost(String),
}

/// Holds the lock on `conn`, confirming it every [`CONFIRM_EVERY`], until it is lost or the
/// campaign stops.
async fn hold(
    shared: &Shared,
    conn: &mut AnyConnection,
    stopped: &mut tokio::sync::watch::Receiver<bool>,
) -> Ended {
    loop {
        if pause(CONFIRM_EVERY, stopped).await {
            return Ended::Stopped;
        }
        match still_held(conn).await {
            Ok(true) => shared.confirmed(),
            Ok(false) => return Ended::Lost("the session no longer holds the lock".into()),
            Err(err) => return Ended::Lost(format!("cannot confirm the lock: {err}")),
        }
    }
}

async fn campaign_postgres(
    shared: &Shared,
    url: &str,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let url = lock_url(url, &shared.id);
    let mut conn: Option<AnyConnection> = None;
    loop {
        if *stopped.borrow() {
            break;
        }
        let session = match conn.as_mut() {
            Some(session) => session,
            None => match connect(&url).await {
                Ok(session) => conn.insert(session),
                Err(err) => {
                    shared.follow(format!("cannot reach PostgreSQL: {err}"), None);
                    if pause(RETRY, &mut stopped).await {
                        break;
                    }
                    continue;
                }
            },
        };
        match try_lock(session).await {
            Ok(true) => {
                shared.lead(Some(Instant::now()));
                match hold(shared, session, &mut stopped).await {
                    Ended::Stopped => break,
                    Ended::Lost(reason) => {
                        shared.follow(reason, None);
                        // The session may be half-broken: a new one, after the stand-down.
                        if let Some(old) = conn.take() {
                            drop_connection(old).await;
                        }
                        if pause(STAND_DOWN, &mut stopped).await {
                            break;
                        }
                    }
                }
            }
            Ok(false) => {
                let leader = holder(session).await;
                shared.follow("another process holds the scheduler lock".into(), leader);
                if pause(RETRY, &mut stopped).await {
                    break;
                }
            }
            Err(err) => {
                shared.follow(format!("cannot try the scheduler lock: {err}"), None);
                if let Some(old) = conn.take() {
                    drop_connection(old).await;
                }
                if pause(RETRY, &mut stopped).await {
                    break;
                }
            }
        }
    }
    // Stopping: release the lock (closing the session releases it too, and does if the unlock
    // cannot be sent), so a follower takes over within its next try.
    if let Some(mut session) = conn {
        let was_leader = shared.lock_state().role == Role::Leader;
        if was_leader {
            let _ = tokio::time::timeout(
                CONFIRM_TIMEOUT,
                sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(SCHEDULER_LOCK_ID)
                    .execute(&mut session),
            )
            .await;
        }
        drop_connection(session).await;
        if was_leader {
            shared.follow("stopping; the scheduler lock is released".into(), None);
        }
    }
}

/// Closes a connection politely when it answers quickly, else drops its socket.
async fn drop_connection(conn: AnyConnection) {
    let _ = tokio::time::timeout(Duration::from_millis(500), conn.close()).await;
}

async fn campaign_file(
    shared: &Shared,
    path: &PathBuf,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    loop {
        match aragora_config::lock_file::try_lock_exclusive(path) {
            Ok(Some(mut file)) => {
                // Who leads, for the followers' logs (the lock, not this text, is the truth).
                use std::io::{Seek, Write};
                let _ = file.set_len(0);
                let _ = file.seek(std::io::SeekFrom::Start(0));
                let _ = writeln!(file, "{}", shared.id);
                shared.lead(None);
                while !pause(Duration::from_secs(3600), &mut stopped).await {}
                // Unlocked as the file closes.
                drop(file);
                shared.follow("stopping; the scheduler lock is released".into(), None);
                return;
            }
            Ok(None) => {
                let leader = std::fs::read_to_string(path)
                    .ok()
                    .map(|text| text.trim().to_string())
                    .filter(|text| !text.is_empty());
                shared.follow(format!("another process holds {}", path.display()), leader);
            }
            Err(err) => shared.follow(format!("cannot lock {}: {err}", path.display()), None),
        }
        if pause(RETRY, &mut stopped).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheduler_lock_is_not_the_migration_lock() {
        assert_ne!(SCHEDULER_LOCK_ID, aragora_engine::store::MIGRATION_LOCK_ID);
    }

    #[test]
    fn a_cut_off_leader_stops_before_the_server_frees_its_lock() {
        assert!(CONFIRM_EVERY + CONFIRM_TIMEOUT <= CONFIRMED_FOR);
        assert!(CONFIRMED_FOR < IDLE_SESSION_TIMEOUT);
        assert!(STAND_DOWN > RETRY, "a healthy follower tries first");
    }

    #[test]
    fn the_lock_session_is_named_for_its_process() {
        assert_eq!(
            lock_url("postgres://u@h/db", "pod-1:42"),
            "postgres://u@h/db?application_name=aragora-scheduler:pod-1:42"
        );
        assert_eq!(
            lock_url("postgres://u@h/db?sslmode=require", "a b:1"),
            "postgres://u@h/db?sslmode=require&application_name=aragora-scheduler:a_b:1"
        );
    }

    /// Two candidates on one SQLite database (one process here: flock is per open file, so
    /// they contend as two processes would).
    #[tokio::test]
    async fn one_candidate_leads_and_a_tick_is_claimed_once_whoever_asks() {
        let dir = tempfile::tempdir().unwrap();
        let engine = EngineConfig {
            data_dir: dir.path().to_path_buf(),
            ..EngineConfig::default()
        };
        let store = SqlStore::connect(DbBackend::Sqlite, &engine.database_url(), 1)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store.close().await;
        let (first, second) = (
            Leadership::start(&engine, None),
            Leadership::start(&engine, None),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let (leader, follower) = loop {
            match (first.role(), second.role()) {
                (Role::Leader, Role::Follower) => break (&first, &second),
                (Role::Follower, Role::Leader) => break (&second, &first),
                roles => assert!(Instant::now() < deadline, "{roles:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(leader.may_start(), Ok(()));
        assert!(follower.may_start().is_err());
        // Even a follower that asks (a split brain) gets no tick the leader claimed.
        assert_eq!(leader.claim("backup", 60_000).await, Ok(Ok(())));
        assert_eq!(
            follower.claim("backup", 60_000).await,
            Ok(Err(leader.id().to_string()))
        );
        assert!(leader.claim("backup", 60_000).await.unwrap().is_err());
        assert_eq!(follower.claim("drill", 60_000).await, Ok(Ok(())));
        leader.stop().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while follower.role() != Role::Leader {
            assert!(Instant::now() < deadline, "the follower never took over");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        follower.stop().await;
    }
}
