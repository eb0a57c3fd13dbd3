//! The scheduler leader: two `aragora control` processes on one database run every scheduled
//! backup once, exactly one of them says it leads (`/healthz`, `aragora_control_leader`), and
//! when the leader dies (`kill -9`), stops (SIGTERM) or loses its lock's connection
//! (`pg_terminate_backend`) the other takes over without a tick run twice.
//!
//! The schedules run on the real clock with a seconds field (a backup every 2 s), so both
//! processes fire for the very same ticks: without the election every tick would be backed up
//! twice.

use crate::support::{
    address, aragora_command, eventually, sample, Engine, EngineOptions, Process, TestDatabase,
};
use serde_json::Value;
use sqlx::{Connection, Row};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Every 2 seconds: ticks both processes agree on, short enough for a test to see many.
const EVERY_TWO_SECONDS: &str = "*/2 * * * * *";
const TICK_MS: i64 = 2000;
/// A follower tries the lock every 2 s; PostgreSQL frees a killed leader's lock at once.
const TAKEOVER: Duration = Duration::from_secs(20);

struct Control {
    process: Process,
    http: std::net::SocketAddr,
    name: &'static str,
}

impl Control {
    fn spawn(name: &'static str, env: &[(&str, &str)], dir: &Path) -> Control {
        let mut command = aragora_command();
        command
            .args(["control", "--listen", "127.0.0.1:0"])
            .env("ARAGORA_DRILL_SCHEDULE", "")
            .env("ARAGORA_BACKUP_SCHEDULE", EVERY_TWO_SECONDS);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut process = Process::spawn(
            &mut command,
            &dir.join(format!("{name}.log")),
            &dir.join(format!("{name}.out")),
        );
        let http = address(&process.announcement("aragora control listening "), "http");
        Control {
            process,
            http,
            name,
        }
    }

    /// `/healthz`'s status and body, `None` while it does not answer.
    async fn health(&self) -> Option<(u16, Value)> {
        let response = reqwest::get(format!("http://{}/healthz", self.http))
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.json().await.ok()?))
    }

    /// The role `/healthz` reports (it answers 200 whichever it is), with the gauge agreeing.
    async fn role(&self) -> Option<String> {
        let (status, body) = self.health().await?;
        assert_eq!(status, 200, "{}: {body}", self.name);
        let role = body["scheduler"]["role"].as_str()?.to_string();
        let metrics = reqwest::get(format!("http://{}/metrics", self.http))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let gauge = sample(&metrics, "aragora_control_leader")?;
        // Read one after the other: a change in between shows as a disagreement once.
        let agrees = (role == "leader") == (gauge == 1.0);
        agrees.then_some(role)
    }

    fn id(&self) -> String {
        format!("{}:{}", hostname(), self.process.pid())
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// Waits until exactly one of `controls` reports leader and the others follower; the leader's
/// index.
async fn one_leader(controls: &[&Control], patience: Duration) -> usize {
    eventually("exactly one leader", patience, || async {
        let mut roles = Vec::new();
        for control in controls {
            roles.push(control.role().await?);
        }
        let leaders: Vec<usize> = (0..roles.len()).filter(|&i| roles[i] == "leader").collect();
        let followers = roles.iter().filter(|r| *r == "follower").count();
        (leaders.len() == 1 && followers == roles.len() - 1).then(|| leaders[0])
    })
    .await
}

/// The backups recorded in the DR log, by the 2-second tick they were taken in.
async fn backups_by_tick(url: &str) -> BTreeMap<i64, usize> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let rows = sqlx::query("SELECT created_at_ms FROM backups")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let mut ticks = BTreeMap::new();
    for row in rows {
        let at: i64 = row.get("created_at_ms");
        *ticks.entry(at.div_euclid(TICK_MS)).or_insert(0) += 1;
    }
    ticks
}

/// Who ran each claimed backup tick (`scheduled_runs`), by tick.
async fn claims(url: &str) -> BTreeMap<i64, String> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("SELECT scheduled_for_ms, holder FROM scheduled_runs WHERE job = 'backup'")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get("scheduled_for_ms"), row.get("holder")))
        .collect()
}

fn assert_once_per_tick(ticks: &BTreeMap<i64, usize>, logs: &str) {
    let doubled: Vec<_> = ticks.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "ticks backed up more than once: {doubled:?}\n{logs}"
    );
}

/// Waits until `count` more backups than `before` are recorded.
async fn more_backups(url: &str, before: usize, count: usize) {
    eventually(
        "more scheduled backups",
        Duration::from_secs(60),
        || async {
            let total: usize = backups_by_tick(url).await.values().sum();
            (total >= before + count).then_some(())
        },
    )
    .await;
}

/// A PostgreSQL database with the engine's schema (an engine migrated it and stopped) and the
/// environment a control on it needs; backups go to one shared directory.
async fn postgres_site(dir: &Path) -> (TestDatabase, Vec<(&'static str, String)>) {
    let database = TestDatabase::create().await;
    let mut engine = Engine::start(EngineOptions::postgres(&database.url)).await;
    engine.signal(libc::SIGTERM);
    engine.wait_exit(Duration::from_secs(30)).await;
    let env = vec![
        ("ARAGORA_DB_BACKEND", "postgres".to_string()),
        ("DATABASE_URL", database.url.clone()),
        (
            "ARAGORA_BACKUP_DIR",
            dir.join("backups").display().to_string(),
        ),
    ];
    (database, env)
}

fn with_data_dir<'a>(
    env: &'a [(&'static str, String)],
    data_dir: &'a Path,
) -> Vec<(&'a str, &'a str)> {
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.push(("ARAGORA_DATA_DIR", data_dir.to_str().unwrap()));
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controls_on_postgres_back_up_each_tick_once_and_the_follower_takes_over_from_a_killed_leader(
) {
    let dir = tempfile::tempdir().unwrap();
    let (database, env) = postgres_site(dir.path()).await;
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let a = Control::spawn("a", &with_data_dir(&env, &a_dir), dir.path());
    let b = Control::spawn("b", &with_data_dir(&env, &b_dir), dir.path());
    let mut controls = [a, b];
    let leader = one_leader(&[&controls[0], &controls[1]], TAKEOVER).await;
    let follower = 1 - leader;
    more_backups(&database.url, 0, 4).await;
    let logs = |controls: &[Control]| {
        controls
            .iter()
            .map(|c| format!("--- {}\n{}", c.name, c.process.log_text()))
            .collect::<String>()
    };
    assert_once_per_tick(&backups_by_tick(&database.url).await, &logs(&controls));
    // Every claimed tick is the leader's; the follower ran none.
    let by = claims(&database.url).await;
    assert!(
        by.values().all(|holder| *holder == controls[leader].id()),
        "{by:?}"
    );
    // Still one leader (the follower never took a tick and says so).
    assert_eq!(controls[follower].role().await.as_deref(), Some("follower"));

    // kill -9: no chance to release anything; PostgreSQL ends the session and its lock.
    controls[leader].process.signal(libc::SIGKILL);
    controls[leader]
        .process
        .wait_exit(Duration::from_secs(10))
        .await;
    eventually("the follower leads", TAKEOVER, || async {
        (controls[follower].role().await? == "leader").then_some(())
    })
    .await;
    let before: usize = backups_by_tick(&database.url).await.values().sum();
    more_backups(&database.url, before, 3).await;
    assert_once_per_tick(&backups_by_tick(&database.url).await, &logs(&controls));
    let by = claims(&database.url).await;
    let new_leader = controls[follower].id();
    assert!(
        by.values().filter(|holder| **holder == new_leader).count() >= 3,
        "{by:?}"
    );
    let log = controls[follower].process.log_text();
    assert!(
        log.contains("this process now leads the schedules"),
        "{log}"
    );
}

/// The id of the backend holding the scheduler lock in `url`'s database.
async fn lock_session(url: &str) -> Option<i32> {
    let mut conn = sqlx::PgConnection::connect(url).await.ok()?;
    sqlx::query(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
         AND objid::bigint = 2089872454 AND database = \
         (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_optional(&mut conn)
    .await
    .ok()?
    .map(|row| row.get("pid"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lock_session_is_terminated_steps_down_and_the_other_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let (database, env) = postgres_site(dir.path()).await;
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let a = Control::spawn("a", &with_data_dir(&env, &a_dir), dir.path());
    let b = Control::spawn("b", &with_data_dir(&env, &b_dir), dir.path());
    let controls = [a, b];
    let leader = one_leader(&[&controls[0], &controls[1]], TAKEOVER).await;
    let follower = 1 - leader;
    more_backups(&database.url, 0, 2).await;
    // The lock's session is the leader's own (named for it in pg_stat_activity).
    let pid = eventually("the lock's session", TAKEOVER, || {
        lock_session(&database.url)
    })
    .await;
    let mut admin = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let name: String = sqlx::query("SELECT application_name FROM pg_stat_activity WHERE pid = $1")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .unwrap()
        .get("application_name");
    assert_eq!(
        name,
        format!("aragora-scheduler:{}", controls[leader].id()),
        "the lock is held by the leader's own session"
    );
    let terminated: bool = sqlx::query("SELECT pg_terminate_backend($1) AS done")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .unwrap()
        .get("done");
    assert!(terminated);
    // The old leader stops within its confirmation interval; the other leads after it (the old
    // one stands down before standing again), and the two never both say leader.
    eventually(
        "the old leader steps down",
        Duration::from_secs(10),
        || async { (controls[leader].role().await? == "follower").then_some(()) },
    )
    .await;
    eventually("the other leads", TAKEOVER, || async {
        let roles = (
            controls[leader].role().await?,
            controls[follower].role().await?,
        );
        assert!(
            !(roles.0 == "leader" && roles.1 == "leader"),
            "two leaders at once"
        );
        (roles.1 == "leader").then_some(())
    })
    .await;
    let log = controls[leader].process.log_text();
    assert!(log.contains("leadership lost"), "{log}");
    let before: usize = backups_by_tick(&database.url).await.values().sum();
    more_backups(&database.url, before, 3).await;
    let all = controls
        .iter()
        .map(|c| format!("--- {}\n{}", c.name, c.process.log_text()))
        .collect::<String>();
    assert_once_per_tick(&backups_by_tick(&database.url).await, &all);
    let by = claims(&database.url).await;
    let newest: Vec<&String> = by.values().rev().take(3).collect();
    assert!(
        newest
            .iter()
            .all(|holder| **holder == controls[follower].id()),
        "{by:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controls_on_one_sqlite_data_dir_elect_one_leader() {
    let dir = tempfile::tempdir().unwrap();
    // An engine makes the database (and its schema), then stops: controls back it up.
    let mut engine = Engine::start(EngineOptions::sqlite()).await;
    engine.signal(libc::SIGTERM);
    engine.wait_exit(Duration::from_secs(30)).await;
    let data_dir = engine.data_dir.to_str().unwrap().to_string();
    // Drills too, every 5 s: each one restores the latest backup and runs a smoke debate.
    let env = [
        ("ARAGORA_DATA_DIR", data_dir.as_str()),
        ("ARAGORA_DRILL_SCHEDULE", "*/5 * * * * *"),
    ];
    let a = Control::spawn("a", &env, dir.path());
    let b = Control::spawn("b", &env, dir.path());
    let mut controls = [a, b];
    let leader = one_leader(&[&controls[0], &controls[1]], TAKEOVER).await;
    let follower = 1 - leader;
    let database = engine.data_dir.join("aragora.db");
    // Runs of `sql`'s times (ms) by tick of `tick_ms`.
    let count = |database: std::path::PathBuf, sql: &'static str, tick_ms: i64| async move {
        let url = format!("sqlite://{}?mode=ro", database.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.ok()?;
        let rows = sqlx::query(sql).fetch_all(&mut conn).await.ok()?;
        let mut ticks: BTreeMap<i64, usize> = BTreeMap::new();
        for row in rows {
            let at: i64 = row.get(0);
            *ticks.entry(at.div_euclid(tick_ms)).or_insert(0) += 1;
        }
        Some(ticks)
    };
    let (backups, drills) = eventually(
        "three scheduled backups and two drills",
        Duration::from_secs(90),
        || {
            let database = database.clone();
            async move {
                let backups = count(
                    database.clone(),
                    "SELECT created_at_ms FROM backups",
                    TICK_MS,
                )
                .await?;
                let drills = count(database, "SELECT started_at_ms FROM drills", 5000).await?;
                (backups.values().sum::<usize>() >= 3 && drills.values().sum::<usize>() >= 2)
                    .then_some((backups, drills))
            }
        },
    )
    .await;
    let logs = controls
        .iter()
        .map(|c| format!("--- {}\n{}", c.name, c.process.log_text()))
        .collect::<String>();
    assert_once_per_tick(&backups, &logs);
    assert_once_per_tick(&drills, &logs);
    let (_, body) = controls[follower].health().await.unwrap();
    assert_eq!(body["scheduler"]["lock"], "file_lock", "{body}");
    assert_eq!(
        body["scheduler"]["leader"].as_str(),
        Some(controls[leader].id().as_str()),
        "the follower names the leader: {body}"
    );
    // A leader that stops releases the lock; the other takes over.
    controls[leader].process.signal(libc::SIGTERM);
    let status = controls[leader]
        .process
        .wait_exit(Duration::from_secs(15))
        .await;
    assert!(status.success(), "{status:?}");
    eventually("the follower leads", TAKEOVER, || async {
        (controls[follower].role().await? == "leader").then_some(())
    })
    .await;
}

/// A leader whose database link goes silent (the fault proxy's black hole, both ways: no reset
/// ever arrives) stops within its confirmation timeout; the server ends its idle lock session
/// after `idle_session_timeout`, and only then does the other take over: never two leaders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_postgres_stops_before_the_other_takes_over() {
    use crate::support::proxy::ProxyProcess;
    let dir = tempfile::tempdir().unwrap();
    let (database, env) = postgres_site(dir.path()).await;
    let proxy = ProxyProcess::start("postgres", "127.0.0.1:5432").await;
    let through_proxy = database
        .url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.listen));
    assert_ne!(through_proxy, database.url);
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let mut a_env = with_data_dir(&env, &a_dir);
    for entry in a_env.iter_mut() {
        if entry.0 == "DATABASE_URL" {
            entry.1 = through_proxy.as_str();
        }
    }
    // `a` first, so it leads through the proxy; `b` reaches PostgreSQL directly.
    let a = Control::spawn("a", &a_env, dir.path());
    eventually("a leads", TAKEOVER, || async {
        (a.role().await? == "leader").then_some(())
    })
    .await;
    let b = Control::spawn("b", &with_data_dir(&env, &b_dir), dir.path());
    assert_eq!(one_leader(&[&a, &b], TAKEOVER).await, 0);
    more_backups(&database.url, 0, 2).await;

    proxy
        .add_fault(
            "postgres",
            serde_json::json!({"kind": "blackhole", "direction": "both"}),
        )
        .await;
    let cut = std::time::Instant::now();
    eventually("a steps down", Duration::from_secs(10), || async {
        let role = a.role().await?;
        assert_ne!(
            b.role().await.as_deref(),
            Some("leader"),
            "b leads before a stopped"
        );
        (role == "follower").then_some(())
    })
    .await;
    let stepped_down = cut.elapsed();
    eventually("b leads", Duration::from_secs(30), || async {
        let roles = (a.role().await?, b.role().await?);
        assert!(
            !(roles.0 == "leader" && roles.1 == "leader"),
            "two leaders at once"
        );
        (roles.1 == "leader").then_some(())
    })
    .await;
    let took_over = cut.elapsed();
    assert!(
        stepped_down < took_over,
        "a stopped after {stepped_down:?}, b led after {took_over:?}"
    );
    let log = a.process.log_text();
    assert!(log.contains("leadership lost"), "{log}");
    let before: usize = backups_by_tick(&database.url).await.values().sum();
    more_backups(&database.url, before, 2).await;
    let all = format!("--- a\n{}--- b\n{}", log, b.process.log_text());
    assert_once_per_tick(&backups_by_tick(&database.url).await, &all);
}

/// `aragora serve` replicas with `ARAGORA_DR_SCHEDULER=true` stand in the same election: two of
/// them on one PostgreSQL database back each tick up once, and the one that leads says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_replicas_with_the_dr_scheduler_back_up_each_tick_once() {
    let database = TestDatabase::create().await;
    let options = || {
        EngineOptions::postgres(&database.url)
            .env("ARAGORA_DR_SCHEDULER", "true")
            .env("ARAGORA_BACKUP_SCHEDULE", EVERY_TWO_SECONDS)
            .env("ARAGORA_DRILL_SCHEDULE", "")
    };
    let first = Engine::start(options()).await;
    let second = Engine::start(options()).await;
    more_backups(&database.url, 0, 4).await;
    let logs = format!(
        "--- first\n{}--- second\n{}",
        first.log_text(),
        second.log_text()
    );
    assert_once_per_tick(&backups_by_tick(&database.url).await, &logs);
    let leads = |log: &str| log.contains("this process now leads the schedules");
    assert!(
        leads(&first.log_text()) != leads(&second.log_text()),
        "exactly one replica leads:\n{logs}"
    );
    // Each replica's own /metrics says which one it is.
    let gauge = |metrics: String| sample(&metrics, "aragora_control_leader");
    let gauges = (gauge(first.metrics().await), gauge(second.metrics().await));
    let expected = if leads(&first.log_text()) {
        (Some(1.0), Some(0.0))
    } else {
        (Some(0.0), Some(1.0))
    };
    assert_eq!(gauges, expected, "{logs}");
    let holders: std::collections::BTreeSet<String> =
        claims(&database.url).await.into_values().collect();
    assert_eq!(holders.len(), 1, "{holders:?}");
}
