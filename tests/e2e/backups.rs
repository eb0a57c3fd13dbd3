//! Backups and DR drills through the real binary: `aragora backup create|list|verify|restore`
//! and `aragora drill run|history` against a running engine on SQLite and on PostgreSQL.
//! Encrypted backups (`ARAGORA_ENCRYPTION_KEY`) are in [`encryption`].

use crate::support::prom::PromServer;
use crate::support::{
    aragora_command, describe_output, eventually, sample, Backend, Engine, EngineOptions,
    TestDatabase,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

mod encryption;

/// Where a CLI command finds the engine's database and backups.
#[derive(Clone)]
struct Site {
    data_dir: PathBuf,
    postgres: Option<String>,
    env: Vec<(String, String)>,
}

impl Site {
    fn of(engine: &Engine, postgres: Option<String>) -> Self {
        Self {
            data_dir: engine.data_dir.clone(),
            postgres,
            env: Vec::new(),
        }
    }

    fn backup_dir(&self) -> PathBuf {
        self.data_dir.join("backups")
    }

    fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs `aragora ARGS` against this site.
    async fn run(&self, args: &[&str]) -> Output {
        let mut command = aragora_command();
        command.args(args).env("ARAGORA_DATA_DIR", &self.data_dir);
        if let Some(url) = &self.postgres {
            command
                .env("ARAGORA_DB_BACKEND", "postgres")
                .env("DATABASE_URL", url);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        tokio::task::spawn_blocking(move || command.output().expect("run aragora"))
            .await
            .unwrap()
    }

    /// Runs a command that prints one JSON object and must succeed.
    async fn json(&self, args: &[&str]) -> Value {
        let output = self.run(args).await;
        assert!(
            output.status.success(),
            "aragora {args:?} failed: {}",
            describe_output(&output)
        );
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", describe_output(&output)))
    }

    async fn create_backup(&self) -> Value {
        self.json(&["backup", "create", "--output", "json"]).await["backup"].clone()
    }
}

fn postgres_url(options: &EngineOptions) -> Option<String> {
    match &options.backend {
        Backend::Postgres(url) => Some(url.clone()),
        Backend::Sqlite => None,
    }
}

/// Runs `count` offline debates to completion (each with events and a signed receipt).
async fn debates(engine: &Engine, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let id = engine
            .start_debate(
                json!({"topic": format!("Backups, debate {i}: tabs or spaces?"), "rounds": 2}),
            )
            .await;
        let record = engine.wait_final(&id, Duration::from_secs(30)).await;
        assert_eq!(record["status"], "completed", "{record}");
        ids.push(id);
    }
    ids
}

/// What a user sees of a debate: its record, its messages and its receipt.
async fn visible_state(engine: &Engine, id: &str) -> Value {
    let (_, record) = engine.get(&format!("/api/debates/{id}")).await;
    let (_, messages) = engine.get(&format!("/api/debates/{id}/messages")).await;
    let (_, receipt) = engine.get(&format!("/api/debates/{id}/receipt")).await;
    json!({"record": record, "messages": messages, "receipt": receipt})
}

/// An empty place to restore into: a directory for SQLite, or a new PostgreSQL database
/// (dropped with the returned guard); and what to pass to `--into`.
/// A restore target: a fresh SQLite directory, or a fresh PostgreSQL database.
struct Target {
    dir: tempfile::TempDir,
    database: Option<TestDatabase>,
    /// What `--into` is given.
    into: String,
}

impl Target {
    /// Panics unless nothing was restored into the target: no SQLite file, or no table in the
    /// PostgreSQL database.
    async fn assert_nothing_written(&self, why: &str) {
        assert!(
            !self.dir.path().join("aragora.db").exists(),
            "{why}: a SQLite database was written"
        );
        if let Some(database) = &self.database {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&database.url).await.unwrap();
            let tables: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .fetch_one(&mut connection)
            .await
            .unwrap();
            assert_eq!(tables, 0, "{why}: tables were created in {}", database.name);
        }
    }
}

async fn empty_target(postgres: bool) -> Target {
    let dir = tempfile::tempdir().unwrap();
    let database = if postgres {
        Some(TestDatabase::create().await)
    } else {
        None
    };
    let into = match &database {
        Some(db) => db.url.clone(),
        None => dir.path().display().to_string(),
    };
    Target {
        dir,
        database,
        into,
    }
}

/// Flips bytes in the middle of a backup's artifact.
fn corrupt(site: &Site, backup: &Value) -> PathBuf {
    let artifact = site.backup_dir().join(backup["artifact"].as_str().unwrap());
    let mut bytes = std::fs::read(&artifact).unwrap();
    let middle = bytes.len() / 2;
    let end = (middle + 16).min(bytes.len());
    for byte in &mut bytes[middle..end] {
        *byte ^= 0xff;
    }
    std::fs::write(&artifact, bytes).unwrap();
    artifact
}

on_both_backends!(
    a_restored_backup_holds_the_same_debates_events_and_receipts,
    a_corrupted_backup_is_refused_by_verify_and_restore,
    a_drill_on_a_good_backup_passes_and_is_recorded,
    a_drill_on_a_broken_backup_fails_and_says_why,
    a_backup_that_does_not_match_its_manifest_is_refused,
);

async fn a_restored_backup_holds_the_same_debates_events_and_receipts(options: EngineOptions) {
    let url = postgres_url(&options);
    let postgres = url.is_some();
    let engine = Engine::start(options.env("ARAGORA_RECEIPT_SIGNING_KEY", KEY)).await;
    let site = Site::of(&engine, url);
    let ids = debates(&engine, 3).await;
    let backup = site.create_backup().await;
    assert_eq!(backup["row_counts"]["debates"], 3, "{backup}");
    assert_eq!(backup["row_counts"]["receipts"], 3, "{backup}");
    assert!(
        backup["row_counts"]["debate_events"].as_i64().unwrap() > 10,
        "{backup}"
    );
    assert_eq!(backup["sha256"].as_str().unwrap().len(), 64);

    let listed = site.json(&["backup", "list", "--output", "json"]).await;
    assert_eq!(listed["backups"][0]["id"], backup["id"], "{listed}");
    let verified = site.run(&["backup", "verify", "latest"]).await;
    assert!(verified.status.success(), "{}", describe_output(&verified));

    // Restore into a fresh database of the same backend and serve it.
    let Target {
        dir: restored_dir,
        database: target_db,
        into,
    } = empty_target(postgres).await;
    let restore = site
        .run(&[
            "backup",
            "restore",
            backup["id"].as_str().unwrap(),
            "--into",
            &into,
        ])
        .await;
    assert!(restore.status.success(), "{}", describe_output(&restore));
    assert!(
        String::from_utf8_lossy(&restore.stdout).contains("3 debates"),
        "{}",
        describe_output(&restore)
    );

    let replica_options = match &target_db {
        Some(db) => EngineOptions::postgres(&db.url),
        None => EngineOptions::sqlite(),
    };
    let replica = Engine::start(
        replica_options
            .env("ARAGORA_RECEIPT_SIGNING_KEY", KEY)
            .data_dir(restored_dir.path()),
    )
    .await;
    let (_, listed_primary) = engine.get("/api/debates?limit=100").await;
    let (_, listed_restored) = replica.get("/api/debates?limit=100").await;
    assert_eq!(listed_primary, listed_restored);
    for id in &ids {
        assert_eq!(
            visible_state(&engine, id).await,
            visible_state(&replica, id).await,
            "debate {id}"
        );
    }
    // The restored receipts still verify with the key.
    let (_, receipt) = replica
        .get(&format!("/api/debates/{}/receipt", ids[0]))
        .await;
    let (_, verdict) = replica.post_json("/api/receipts/verify", &receipt).await;
    assert_eq!(verdict["valid"], true, "{verdict}");

    // A restore never silently overwrites a database that holds debates.
    let again = site.run(&["backup", "restore", "--into", &into]).await;
    assert_eq!(again.status.code(), Some(1), "{}", describe_output(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--force"),
        "{}",
        describe_output(&again)
    );
}

async fn a_corrupted_backup_is_refused_by_verify_and_restore(options: EngineOptions) {
    let url = postgres_url(&options);
    let postgres = url.is_some();
    let engine = Engine::start(options).await;
    let site = Site::of(&engine, url);
    debates(&engine, 1).await;
    let backup = site.create_backup().await;
    corrupt(&site, &backup);

    let verify = site.run(&["backup", "verify"]).await;
    assert_eq!(
        verify.status.code(),
        Some(1),
        "{}",
        describe_output(&verify)
    );
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        stderr.contains("is corrupted") && stderr.contains("sha256"),
        "{stderr}"
    );
    assert!(
        stderr.contains("aragora backup list"),
        "says what to do: {stderr}"
    );

    let target = empty_target(postgres).await;
    let restore = site
        .run(&["backup", "restore", "--into", &target.into])
        .await;
    assert_eq!(
        restore.status.code(),
        Some(1),
        "{}",
        describe_output(&restore)
    );
    assert!(
        String::from_utf8_lossy(&restore.stderr).contains("is corrupted"),
        "{}",
        describe_output(&restore)
    );
    target.assert_nothing_written("a corrupted backup").await;

    // A backup of the other backend is refused before anything is read, into a fresh target
    // of that backend.
    let other = empty_target(!postgres).await;
    let mismatch = site
        .run(&["backup", "restore", "--into", &other.into])
        .await;
    assert_eq!(
        mismatch.status.code(),
        Some(1),
        "{}",
        describe_output(&mismatch)
    );
    let stderr = String::from_utf8_lossy(&mismatch.stderr);
    assert!(
        stderr.contains("backup but the target database is"),
        "{stderr}"
    );
    other
        .assert_nothing_written("a backup of the other backend")
        .await;
}

async fn a_drill_on_a_good_backup_passes_and_is_recorded(options: EngineOptions) {
    let url = postgres_url(&options);
    let postgres = url.is_some();
    let engine = Engine::start(options).await;
    let site = Site::of(&engine, url);
    debates(&engine, 2).await;
    let backup = site.create_backup().await;
    let report = site.json(&["drill", "run", "--output", "json"]).await;
    eprintln!(
        "drill on {}: rto_seconds={} rpo_seconds={}",
        if postgres { "postgres" } else { "sqlite" },
        report["rto_seconds"],
        report["rpo_seconds"]
    );
    assert_eq!(report["status"], "passed", "{report:#}");
    assert_eq!(report["backup_id"], backup["id"]);
    let rto = report["rto_seconds"].as_f64().expect("rto_seconds");
    assert!(rto > 0.0 && rto < 60.0, "{report}");
    assert_eq!(
        report["rpo_seconds"].as_f64(),
        Some(0.0),
        "nothing changed since the backup: {report}"
    );
    assert_eq!(report["receipts_verified"], 2, "{report}");
    assert_eq!(report["restored_rows"]["debates"], 2, "{report}");
    assert!(report["smoke_debate_id"].is_string(), "{report}");

    // The drill never wrote into the primary's debates (its smoke debate ran on the copy).
    let (_, listed) = engine.get("/api/debates").await;
    assert_eq!(listed["total"], 2, "{listed}");

    let (status, drills) = engine.get("/api/drills").await;
    assert_eq!(status, 200, "{drills}");
    assert_eq!(drills["drills"][0]["id"], report["id"], "{drills}");
    assert_eq!(drills["drills"][0]["status"], "passed");
    let history = site.json(&["drill", "history", "--output", "json"]).await;
    assert_eq!(history["drills"][0]["id"], report["id"], "{history}");

    let metrics = engine.metrics().await;
    let now = aragora_engine::model::now_ms() as f64 / 1000.0;
    for name in [
        "aragora_dr_drill_last_success_timestamp_seconds",
        "aragora_backup_last_success_timestamp_seconds",
    ] {
        let value = sample(&metrics, name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(
            (now - 120.0..=now + 1.0).contains(&value),
            "{name} = {value}"
        );
    }
    assert_eq!(
        sample(&metrics, "aragora_dr_drill_rto_seconds"),
        report["rto_seconds"].as_f64()
    );
    assert_eq!(sample(&metrics, "aragora_dr_drill_rpo_seconds"), Some(0.0));
}

async fn a_drill_on_a_broken_backup_fails_and_says_why(options: EngineOptions) {
    let url = postgres_url(&options);
    let engine = Engine::start(options).await;
    let site = Site::of(&engine, url);
    debates(&engine, 1).await;
    let backup = site.create_backup().await;
    corrupt(&site, &backup);
    let output = site.run(&["drill", "run", "--output", "json"]).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        describe_output(&output)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(report["status"], "failed");
    assert!(report["rto_seconds"].is_null(), "never got ready: {report}");
    let failures = report["failures"].to_string();
    assert!(
        failures.contains("is corrupted") && failures.contains("sha256"),
        "{failures}"
    );

    let (_, drills) = engine.get("/api/drills").await;
    assert_eq!(drills["drills"][0]["status"], "failed", "{drills}");
    let metrics = engine.metrics().await;
    assert_eq!(
        sample(&metrics, "aragora_dr_drill_last_success_timestamp_seconds"),
        Some(0.0),
        "a failed drill is not a success"
    );
    assert!(sample(&metrics, "aragora_dr_drill_last_failure_timestamp_seconds").unwrap() > 0.0);
    // A real Prometheus scraping the engine with the generated rules raises the alert.
    let prometheus = PromServer::prometheus(&[("aragora-engine", engine.api.to_string())]).await;
    let alerts = eventually(
        "AragoraDrillFailed to fire in Prometheus",
        Duration::from_secs(60),
        || async {
            let firing = prometheus.alerts("AragoraDrillFailed", "firing").await;
            (!firing.is_empty()).then_some(firing)
        },
    )
    .await;
    assert_eq!(alerts[0]["labels"]["severity"], "warning", "{alerts:#?}");
    // Nothing of the scratch database is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(site.backup_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|name| name.starts_with(".drill-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Rewrites one field of a backup's manifest (the artifact stays intact, so its checksum holds).
fn tamper_manifest(site: &Site, backup: &Value, field: &str, value: Value) {
    let path = site
        .backup_dir()
        .join(format!("{}.manifest.json", backup["id"].as_str().unwrap()));
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest[field] = value;
    std::fs::write(&path, manifest.to_string()).unwrap();
}

/// Restores the latest backup into an empty target (PostgreSQL when `postgres`) and panics
/// unless the restore exits 1 with `refusal` in its stderr and writes nothing (`why`).
async fn assert_restore_refused(site: &Site, postgres: bool, refusal: &str, why: &str) {
    let target = empty_target(postgres).await;
    let restore = site
        .run(&["backup", "restore", "--into", &target.into])
        .await;
    assert_eq!(
        restore.status.code(),
        Some(1),
        "{}",
        describe_output(&restore)
    );
    let stderr = String::from_utf8_lossy(&restore.stderr);
    assert!(stderr.contains(refusal), "{stderr}");
    target.assert_nothing_written(why).await;
}

async fn a_backup_that_does_not_match_its_manifest_is_refused(options: EngineOptions) {
    let url = postgres_url(&options);
    let postgres = url.is_some();
    let engine = Engine::start(options).await;
    let site = Site::of(&engine, url);
    debates(&engine, 1).await;

    // A backup from a newer aragora: refused before anything is read or written.
    let newer = site.create_backup().await;
    tamper_manifest(&site, &newer, "schema_version", json!(999));
    assert_restore_refused(
        &site,
        postgres,
        "schema version 999, newer than this aragora's",
        "a backup from a newer schema",
    )
    .await;

    // Rows that do not match the manifest: the restored copy is checked and thrown away.
    let miscounted = site.create_backup().await;
    tamper_manifest(
        &site,
        &miscounted,
        "row_counts",
        json!({"debates": 7, "debate_events": 0, "receipts": 0}),
    );
    assert_restore_refused(
        &site,
        postgres,
        "debates: 1 rows restored, the manifest says 7",
        "the bad copy is not installed",
    )
    .await;
    let verify = site.run(&["backup", "verify"]).await;
    assert_eq!(
        verify.status.code(),
        Some(1),
        "{}",
        describe_output(&verify)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_measures_rpo_from_data_written_after_the_backup() {
    let engine = Engine::start(EngineOptions::sqlite()).await;
    let site = Site::of(&engine, None);
    debates(&engine, 1).await;
    site.create_backup().await;
    debates(&engine, 1).await;
    let report = site.json(&["drill", "run", "--output", "json"]).await;
    assert_eq!(report["status"], "passed", "{report:#}");
    assert_eq!(
        report["restored_rows"]["debates"], 1,
        "the later debate is not in the backup"
    );
    let rpo = report["rpo_seconds"].as_f64().unwrap();
    assert!(rpo > 0.0 && rpo < 60.0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_backups_by_count() {
    let engine = Engine::start(EngineOptions::sqlite()).await;
    let site = Site::of(&engine, None).env("ARAGORA_BACKUP_KEEP_COUNT", "2");
    debates(&engine, 1).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            site.create_backup().await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let listed = site.json(&["backup", "list", "--output", "json"]).await;
    let kept: Vec<&str> = listed["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(kept, [ids[2].as_str(), ids[1].as_str()], "{listed}");
    let files = std::fs::read_dir(site.backup_dir()).unwrap().count();
    assert_eq!(files, 4, "two artifacts and two manifests, nothing else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_is_taken_while_debates_are_being_written() {
    let engine =
        Engine::start(EngineOptions::sqlite().env("ARAGORA_OFFLINE_AGENT_LATENCY_MS", "20")).await;
    let site = Site::of(&engine, None);
    let running: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(
                engine
                    .start_debate(json!({"topic": format!("online backup {i}"), "rounds": 3}))
                    .await,
            );
        }
        ids
    };
    let backup = site.create_backup().await;
    let verified = site
        .run(&["backup", "verify", backup["id"].as_str().unwrap()])
        .await;
    assert!(verified.status.success(), "{}", describe_output(&verified));
    for id in &running {
        assert_eq!(
            engine.wait_final(id, Duration::from_secs(60)).await["status"],
            "completed"
        );
    }
}

/// An engine taking a backup every second, and the first manifest the schedule wrote.
async fn with_a_scheduled_backup(options: EngineOptions) -> (Engine, String) {
    let engine = Engine::start(
        options
            .env("ARAGORA_DR_SCHEDULER", "true")
            .env("ARAGORA_BACKUP_SCHEDULE", "* * * * * *")
            .env("ARAGORA_DRILL_SCHEDULE", ""),
    )
    .await;
    let backups = engine.data_dir.join("backups");
    let manifest = eventually(
        "a scheduled backup's manifest",
        Duration::from_secs(30),
        || {
            let backups = backups.clone();
            async move { first_manifest(&backups) }
        },
    )
    .await;
    (engine, manifest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_schedule_fires_inside_serve() {
    let (engine, manifest) = with_a_scheduled_backup(EngineOptions::sqlite()).await;
    assert!(manifest.contains("\"backend\": \"sqlite\""), "{manifest}");
    eventually(
        "the backup metric to show it",
        Duration::from_secs(30),
        || async {
            let metrics = engine.metrics().await;
            (sample(&metrics, "aragora_backup_last_success_timestamp_seconds")? > 0.0).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drill_schedule_fires_inside_serve_and_records_its_drills() {
    let mut first = Engine::start(EngineOptions::sqlite()).await;
    let site = Site::of(&first, None);
    debates(&first, 1).await;
    site.create_backup().await;
    // The same data directory, now with a drill every second.
    first.signal(libc::SIGTERM);
    first.wait_exit(Duration::from_secs(30)).await;
    let options = EngineOptions::sqlite()
        .env("ARAGORA_DR_SCHEDULER", "true")
        .env("ARAGORA_BACKUP_SCHEDULE", "")
        .env("ARAGORA_DRILL_SCHEDULE", "* * * * * *");
    let engine = Engine::start(first.restart_options(options)).await;
    let drills = eventually(
        "a scheduled drill in GET /api/drills",
        Duration::from_secs(60),
        || async {
            let (_, body) = engine.get("/api/drills").await;
            (!body["drills"].as_array()?.is_empty()).then_some(body)
        },
    )
    .await;
    let drill = &drills["drills"][0];
    assert_eq!(drill["status"], "passed", "{drill:#}");
    assert!(drill["rto_seconds"].as_f64().unwrap() > 0.0, "{drill}");
    eventually("the drill metric", Duration::from_secs(30), || async {
        let metrics = engine.metrics().await;
        (sample(&metrics, "aragora_dr_drill_last_success_timestamp_seconds")? > 0.0).then_some(())
    })
    .await;
}

fn first_manifest(dir: &Path) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(".manifest.json"))
        .and_then(|e| std::fs::read_to_string(e.path()).ok())
}

const KEY: &str = "backup-test-receipt-signing-key-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_with_nothing_to_restore_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site {
        data_dir: dir.path().to_path_buf(),
        postgres: None,
        env: Vec::new(),
    };
    let output = site.run(&["drill", "run", "--output", "json"]).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        describe_output(&output)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(report["status"], "failed");
    let failures = report["failures"].to_string();
    assert!(
        failures.contains("aragora backup create"),
        "says what to do: {failures}"
    );
    assert!(
        !dir.path().join("aragora.db").exists(),
        "no empty database left behind"
    );
    let backup = site.run(&["backup", "create"]).await;
    assert_eq!(
        backup.status.code(),
        Some(1),
        "{}",
        describe_output(&backup)
    );
    assert!(String::from_utf8_lossy(&backup.stderr).contains("no SQLite database"));
    assert!(!dir.path().join("aragora.db").exists());
}
