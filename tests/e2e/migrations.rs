//! `aragora migrate status|check|up` (the runbook's Procedure 5) through the real binary, on
//! SQLite and on a PostgreSQL database per test: a fresh database is all pending and left
//! untouched by reading it, `up` applies once and records the release, a database newer than
//! the binary or with a changed migration is refused by `check`, `up` and `serve` alike with
//! nothing changed, two `up`s at once on one PostgreSQL database wait for the advisory lock
//! (whose holder they name) and on one SQLite file for its lock file, and the procedure itself: check, backup, up, check, start, health.

use crate::support::{
    command_on, describe_output, eventually, Backend, Engine, EngineOptions, Process, TestDatabase,
};
use aragora_engine::store::{SqlStore, MIGRATION_LOCK_ID};
use aragora_engine::DbBackend;
use serde_json::Value;
use sqlx::{AnyConnection, Connection};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// This binary's release, which `up` records as the applier of what it applies.
const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// One test's database: where a CLI command and an engine find it.
struct Site {
    options: EngineOptions,
    dir: tempfile::TempDir,
}

impl Site {
    fn new(options: EngineOptions) -> Self {
        Self {
            options,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn backend(&self) -> DbBackend {
        match self.options.backend {
            Backend::Sqlite => DbBackend::Sqlite,
            Backend::Postgres(_) => DbBackend::Postgres,
        }
    }

    fn sqlite_file(&self) -> std::path::PathBuf {
        self.dir.path().join("aragora.db")
    }

    /// Runs `aragora migrate ARGS` (or any `aragora ARGS` when the first is not a migrate verb).
    async fn aragora(&self, args: &[&str]) -> Output {
        let mut command = command_on(&self.options, self.dir.path());
        command.args(args);
        tokio::task::spawn_blocking(move || command.output().expect("aragora runs"))
            .await
            .unwrap()
    }

    async fn migrate(&self, args: &[&str]) -> Output {
        let mut all = vec!["migrate"];
        all.extend_from_slice(args);
        self.aragora(&all).await
    }

    async fn status(&self) -> Value {
        let output = self.migrate(&["status", "--output", "json"]).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            describe_output(&output)
        );
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", describe_output(&output)))
    }

    /// A direct connection to the database, for what the test plants or inspects.
    async fn connect(&self) -> AnyConnection {
        sqlx::any::install_default_drivers();
        let url = match &self.options.backend {
            Backend::Sqlite => format!("sqlite://{}", self.sqlite_file().display()),
            Backend::Postgres(url) => url.clone(),
        };
        AnyConnection::connect(&url).await.unwrap()
    }

    async fn execute(&self, sql: &str, binds: Vec<Bind>) {
        let mut conn = self.connect().await;
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = match bind {
                Bind::Int(v) => query.bind(v),
                Bind::Text(v) => query.bind(v),
                Bind::Bytes(v) => query.bind(v),
            };
        }
        query.execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }

    /// Engine options on this site's data directory (kept by the site).
    fn engine_options(&self) -> EngineOptions {
        let mut options = match &self.options.backend {
            Backend::Sqlite => EngineOptions::sqlite(),
            Backend::Postgres(url) => EngineOptions::postgres(url),
        };
        options.env.extend(self.options.env.clone());
        options.data_dir(self.dir.path())
    }
}

impl Site {
    /// `aragora migrate up --wait 1` while another holds the lock: exit 75, and what it said.
    async fn up_gives_up(&self) -> String {
        let gave_up = self.migrate(&["up", "--wait", "1"]).await;
        assert_eq!(
            gave_up.status.code(),
            Some(75),
            "{}",
            describe_output(&gave_up)
        );
        text(&gave_up)
    }

    /// `count` `aragora migrate up --wait 120` running at once on this site.
    fn spawn_ups(&self, count: usize) -> Vec<Process> {
        (0..count)
            .map(|i| {
                let mut command = command_on(&self.options, self.dir.path());
                command.args(["migrate", "up", "--wait", "120"]);
                Process::spawn(
                    &mut command,
                    &self.dir.path().join(format!("up-{i}.log")),
                    &self.dir.path().join(format!("up-{i}.out")),
                )
            })
            .collect()
    }
}

/// What each `up` printed, once each has exited successfully.
async fn outputs_of(ups: Vec<Process>) -> Vec<String> {
    let mut outputs = Vec::new();
    for mut up in ups {
        let exit = up.wait_exit(Duration::from_secs(60)).await;
        let out = std::fs::read_to_string(&up.out).unwrap();
        assert!(exit.success(), "{out}\n{}", up.log_text());
        outputs.push(out);
    }
    outputs
}

/// How many of `outputs` applied up to the latest migration, and how many found nothing to do.
fn appliers_and_idle(outputs: &[String], backend: DbBackend) -> (usize, usize) {
    let latest = SqlStore::latest_schema_version(backend);
    let appliers = outputs
        .iter()
        .filter(|out| out.contains(&format!("applied {latest} ")))
        .count();
    let idle = outputs
        .iter()
        .filter(|out| out.contains("nothing to do"))
        .count();
    (appliers, idle)
}

enum Bind {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn versions(status: &Value, state: &str) -> Vec<i64> {
    status["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == state)
        .map(|m| m["version"].as_i64().unwrap())
        .collect()
}

/// Starts `aragora serve` on the site and expects it to refuse: a non-zero exit whose log says
/// `expected`.
async fn serve_refuses(site: &Site, expected: &[&str]) {
    let mut engine = Engine::spawn(site.engine_options());
    let status = engine.wait_exit(Duration::from_secs(30)).await;
    let log = engine.log_text();
    assert!(!status.success(), "serve started anyway: {log}");
    for part in expected {
        assert!(log.contains(part), "serve's refusal lacks {part:?}: {log}");
    }
}

async fn a_fresh_database_is_all_pending_until_up(options: EngineOptions) {
    let site = Site::new(options);
    let latest = SqlStore::latest_schema_version(site.backend());

    let status = site.status().await;
    assert_eq!(status["latest_known"], latest, "{status}");
    assert_eq!(status["current"], Value::Null, "{status}");
    assert_eq!(status["state"], "pending", "{status}");
    let pending = versions(&status, "pending");
    assert_eq!(pending.last(), Some(&latest), "{status}");
    assert_eq!(
        pending.len(),
        status["migrations"].as_array().unwrap().len()
    );
    // Reading changed nothing: no SQLite file, no PostgreSQL table.
    match site.backend() {
        DbBackend::Sqlite => assert!(!site.sqlite_file().exists(), "status created the file"),
        DbBackend::Postgres => {
            let mut conn = site.connect().await;
            let tables: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap();
            assert_eq!(tables, 0, "status created tables");
        }
    }
    let table = site.migrate(&["status"]).await;
    let shown = text(&table);
    assert!(
        shown.contains("pending") && shown.contains("aragora migrate up"),
        "{shown}"
    );

    let check = site.migrate(&["check"]).await;
    assert_eq!(check.status.code(), Some(1), "{}", describe_output(&check));
    assert!(
        text(&check).contains("aragora migrate up"),
        "{}",
        describe_output(&check)
    );

    let up = site.migrate(&["up"]).await;
    assert_eq!(up.status.code(), Some(0), "{}", describe_output(&up));
    let said = text(&up);
    match site.backend() {
        DbBackend::Sqlite => assert!(said.contains("aragora.db.migrate-lock"), "{said}"),
        DbBackend::Postgres => assert!(said.contains(&MIGRATION_LOCK_ID.to_string()), "{said}"),
    }
    assert!(said.contains(&format!("applied {latest} ")), "{said}");

    let check = site.migrate(&["check"]).await;
    assert_eq!(check.status.code(), Some(0), "{}", describe_output(&check));
    let status = site.status().await;
    assert_eq!(status["current"], latest, "{status}");
    assert_eq!(status["up_to_date"], true, "{status}");
    for migration in status["migrations"].as_array().unwrap() {
        assert_eq!(migration["state"], "applied", "{migration}");
        assert_eq!(migration["applied_by"], RELEASE, "{migration}");
        assert!(
            migration["applied_at_ms"].as_i64().unwrap() > 0,
            "{migration}"
        );
        // sqlx's SHA-384, as this binary embeds it.
        assert_eq!(
            migration["checksum"].as_str().unwrap().len(),
            96,
            "{migration}"
        );
        assert_eq!(migration["database_checksum"], migration["checksum"]);
    }

    // Again: every version is skipped.
    let again = site.migrate(&["up", "--output", "json"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", describe_output(&again));
    let report: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(report["applied"], Value::Array(Vec::new()), "{report}");
    assert_eq!(
        report["already_applied"].as_u64(),
        Some(pending.len() as u64),
        "{report}"
    );
}

async fn a_database_newer_than_the_binary_is_refused(options: EngineOptions) {
    let site = Site::new(options);
    let up = site.migrate(&["up"]).await;
    assert_eq!(up.status.code(), Some(0), "{}", describe_output(&up));
    // A newer release applied a migration this binary does not know.
    let future = SqlStore::latest_schema_version(site.backend()) + 1;
    site.execute(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'from the future', TRUE, $2, 0)",
        vec![Bind::Int(future), Bind::Bytes(vec![7; 48])],
    )
    .await;
    site.execute(
        "INSERT INTO aragora_schema_history (version, applied_by, applied_at_ms) VALUES ($1, $2, 1)",
        vec![Bind::Int(future), Bind::Text("99.1.0".into())],
    )
    .await;
    let before = site.status().await;
    assert_eq!(before["state"], "newer_than_binary", "{before}");
    assert_eq!(
        before["newer_than_binary"][0]["version"], future,
        "{before}"
    );
    assert_eq!(before["newer_than_binary"][0]["applied_by"], "99.1.0");

    let check = site.migrate(&["check"]).await;
    assert_eq!(check.status.code(), Some(2), "{}", describe_output(&check));
    let said = text(&check);
    assert!(said.contains("run aragora 99.1.0 or newer"), "{said}");
    assert!(
        said.contains(&format!("migration {future} applied")),
        "{said}"
    );

    let up = site.migrate(&["up"]).await;
    assert_eq!(up.status.code(), Some(2), "{}", describe_output(&up));
    serve_refuses(&site, &["refusing to start", "run aragora 99.1.0 or newer"]).await;
    assert_eq!(
        site.status().await,
        before,
        "a refusal changed the database"
    );
}

async fn a_changed_migration_is_refused(options: EngineOptions) {
    let site = Site::new(options);
    let up = site.migrate(&["up"]).await;
    assert_eq!(up.status.code(), Some(0), "{}", describe_output(&up));
    let status = site.status().await;
    let first = &status["migrations"][0];
    let (version, description) = (
        first["version"].as_i64().unwrap(),
        first["description"].as_str().unwrap(),
    );
    let binary = first["checksum"].as_str().unwrap().to_string();
    site.execute(
        "UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2",
        vec![
            Bind::Bytes(vec![0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]),
            Bind::Int(version),
        ],
    )
    .await;
    let before = site.status().await;
    assert_eq!(before["state"], "checksum_mismatch", "{before}");
    assert_eq!(
        before["checksum_mismatches"][0]["version"], version,
        "{before}"
    );
    assert_eq!(
        before["checksum_mismatches"][0]["database_checksum"],
        "deadbeef00010203"
    );

    let check = site.migrate(&["check"]).await;
    assert_eq!(check.status.code(), Some(2), "{}", describe_output(&check));
    let named = format!("migration {version} ({description})");
    let said = text(&check);
    for part in [named.as_str(), "deadbeef", &binary[..12]] {
        assert!(said.contains(part), "the refusal lacks {part:?}: {said}");
    }
    serve_refuses(
        &site,
        &[
            "refusing to start",
            named.as_str(),
            "deadbeef",
            &binary[..12],
        ],
    )
    .await;
    assert_eq!(
        site.status().await,
        before,
        "a refusal changed the database"
    );
}

on_both_backends!(
    a_fresh_database_is_all_pending_until_up,
    a_database_newer_than_the_binary_is_refused,
    a_changed_migration_is_refused,
    procedure_5_check_backup_up_check_start,
);

/// Brings the site's database to the schema the previous release left: every embedded
/// migration but the newest, applied by sqlx from a copy of `migrations/<backend>` without it
/// (so with the same checksums). Returns that schema's version.
async fn previous_release_schema(site: &Site) -> i64 {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(site.backend().as_str());
    let mut files: Vec<(i64, std::path::PathBuf)> = std::fs::read_dir(&source)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let version = name.split('_').next()?.parse().ok()?;
            Some((version, path))
        })
        .collect();
    files.sort();
    let (latest, _) = files.pop().expect("migrations");
    assert_eq!(latest, SqlStore::latest_schema_version(site.backend()));
    let older = tempfile::tempdir().unwrap();
    for (_, path) in &files {
        std::fs::copy(path, older.path().join(path.file_name().unwrap())).unwrap();
    }
    let mut conn = site.connect().await;
    sqlx::migrate::Migrator::new(older.path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    files.last().map(|(v, _)| *v).unwrap_or(0)
}

/// The runbook's Procedure 5 as written, on a database the previous release left, with the
/// engine set to migrate only as that separate step (`ARAGORA_AUTO_MIGRATE=false`, so a start
/// before it refuses).
async fn procedure_5_check_backup_up_check_start(options: EngineOptions) {
    let site = Site::new(options.env("ARAGORA_AUTO_MIGRATE", "false"));
    if site.backend() == DbBackend::Sqlite {
        // The test's own connection (no create-if-missing) plants the old schema in it.
        std::fs::File::create(site.sqlite_file()).unwrap();
    }
    let previous = previous_release_schema(&site).await;
    let latest = SqlStore::latest_schema_version(site.backend());
    serve_refuses(
        &site,
        &[
            "refusing to start",
            format!("pending ({latest})").as_str(),
            "aragora migrate up",
        ],
    )
    .await;

    // 1. Check pending migrations.
    let check = site.migrate(&["check"]).await;
    assert_eq!(check.status.code(), Some(1), "{}", describe_output(&check));
    assert!(
        text(&check).contains(&format!("{latest} (")),
        "{}",
        describe_output(&check)
    );
    // 2. A backup first.
    let backup = site
        .aragora(&["backup", "create", "--output", "json"])
        .await;
    assert_eq!(
        backup.status.code(),
        Some(0),
        "{}",
        describe_output(&backup)
    );
    let backup: Value = serde_json::from_slice(&backup.stdout).unwrap();
    assert_eq!(backup["backup"]["schema_version"], previous, "{backup}");
    // 3. Migrate under the lock: only the new migration is applied.
    let up = site.migrate(&["up"]).await;
    assert_eq!(up.status.code(), Some(0), "{}", describe_output(&up));
    assert!(
        text(&up).contains(&format!("applied {latest} ")) && text(&up).contains("1 applied"),
        "{}",
        describe_output(&up)
    );
    // 4. Verify.
    let check = site.migrate(&["check"]).await;
    assert_eq!(check.status.code(), Some(0), "{}", describe_output(&check));
    assert!(
        text(&check).contains("up to date"),
        "{}",
        describe_output(&check)
    );
    let status = site.status().await;
    let by: Vec<&Value> = status["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["applied_by"])
        .collect();
    // Only what this binary applied has a recorded release.
    assert_eq!(by.last(), Some(&&Value::from(RELEASE)), "{status}");
    assert_eq!(by[0], &Value::Null, "{status}");
    let engine = Engine::start(site.engine_options()).await;
    // Step 4's `curl -H "Authorization: Bearer $ARAGORA_API_TOKEN" .../health`: the deep check
    // sees the schema this binary expects.
    let (status, health) = engine.get("/health").await;
    assert_eq!(
        (
            status,
            &health["overall"],
            &health["checks"]["schema"]["status"]
        ),
        (200, &"healthy".into(), &"ok".into()),
        "{health}"
    );
    assert_eq!(
        health["checks"]["schema"]["applied"], health["checks"]["schema"]["expected"],
        "{health}"
    );
}

/// Polls the file until it contains `needle`.
async fn file_says(path: &Path, needle: &str) -> String {
    eventually(
        &format!("{} to say {needle:?}", path.display()),
        Duration::from_secs(30),
        || async {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            text.contains(needle).then_some(text)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_migrate_ups_at_once_wait_for_the_advisory_lock_and_apply_once() {
    let database = TestDatabase::create().await;
    let site = Site::new(EngineOptions::postgres(&database.url));
    // Another instance holds the migration lock.
    let mut holder = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let holder_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK_ID)
        .execute(&mut holder)
        .await
        .unwrap();
    let waiting =
        format!("another instance holds the migration lock {MIGRATION_LOCK_ID} (pid {holder_pid}");

    // One that gives up: exit 75, the holder named, nothing changed.
    let said = site.up_gives_up().await;
    assert!(said.contains(&waiting), "{said}");
    assert!(
        said.contains(&format!(
            "held the migration lock {MIGRATION_LOCK_ID} (pid {holder_pid}"
        )),
        "{said}"
    );

    let ups = site.spawn_ups(2);
    for up in &ups {
        file_says(&up.log, &waiting).await;
    }
    // An engine starting now waits on the same lock, and its readiness says so.
    let engine = Engine::spawn(site.engine_options());
    eventually(
        "the engine's readiness to name the lock",
        Duration::from_secs(30),
        || async {
            let (status, body) = engine.get("/readyz").await;
            (status == 503 && body.to_string().contains(&waiting)).then_some(())
        },
    )
    .await;
    let status = site.status().await;
    assert_eq!(
        status["current"],
        Value::Null,
        "migrated while the lock was held: {status}"
    );

    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK_ID)
        .execute(&mut holder)
        .await
        .unwrap();
    let outputs = outputs_of(ups).await;
    engine.wait_ready().await;
    let (appliers, idle) = appliers_and_idle(&outputs, DbBackend::Postgres);
    // The engine may have been first: then both `up`s found nothing to do.
    assert!(appliers <= 1 && appliers + idle == 2, "{outputs:?}");
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    let status = site.status().await;
    assert_eq!(
        applied as usize,
        status["migrations"].as_array().unwrap().len()
    );
    assert_eq!(status["up_to_date"], true, "{status}");
}

/// SQLite has no advisory lock: two `up`s at once on one file wait for the lock file beside it
/// (held here by the test, as another instance would), and once it is free one applies and the
/// other finds nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_migrate_ups_at_once_on_one_sqlite_file_wait_for_its_lock_file_and_apply_once() {
    let site = Site::new(EngineOptions::sqlite());
    let lock = aragora_engine::schema::sqlite_lock_file(&site.sqlite_file());
    let held = aragora_config::lock_file::try_lock_exclusive(&lock)
        .unwrap()
        .expect("the lock is free");
    let waiting = "another instance holds the migration lock file";

    let said = site.up_gives_up().await;
    assert!(said.contains(waiting), "{said}");
    assert!(
        said.contains(&lock.display().to_string()),
        "the lock file is not named: {said}"
    );

    let ups = site.spawn_ups(2);
    for up in &ups {
        file_says(&up.log, waiting).await;
    }
    assert_eq!(
        site.status().await["current"],
        Value::Null,
        "migrated while the lock was held"
    );
    drop(held);
    let outputs = outputs_of(ups).await;
    let (appliers, idle) = appliers_and_idle(&outputs, DbBackend::Sqlite);
    assert_eq!((appliers, idle), (1, 1), "{outputs:?}");
    let status = site.status().await;
    assert_eq!(status["up_to_date"], true, "{status}");
}
