//! The Receipt Retention Scheduler and `GET /api/system/errors` through the real binary, on
//! SQLite and on PostgreSQL.
//!
//! Time is scaled by the data, not the clock: debates are run by the engine as usual, then
//! some are made old by moving their timestamps (debate, events, receipt) back in the database
//! itself, and the cleanup runs on the real clock. The scheduler's own ticks are made short
//! with a fraction of an hour (`ARAGORA_RECEIPT_CLEANUP_INTERVAL_HOURS=0.0005`, 1.8 s).

use crate::support::{
    aragora_command, describe_output, eventually, sample, with_bearer, Backend, Engine,
    EngineOptions,
};
use serde_json::{json, Value};
use sqlx::{AnyConnection, Connection, Row};
use std::collections::BTreeMap;
use std::time::Duration;

const DAY_MS: i64 = 86_400_000;
const STATUS: &str = "/api/admin/schedulers/receipt-retention/status";
const CLEANUP: &str = "/api/admin/schedulers/receipt-retention/cleanup";

/// Options like `options` for another engine (its own data directory unless told).
fn copy(options: &EngineOptions) -> EngineOptions {
    EngineOptions {
        backend: options.backend.clone(),
        env: options.env.clone(),
        data_dir: None,
        temp: None,
        bearer: options.bearer.clone(),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Receipts kept 60 days, finished debates 30: a debate whose receipt is still kept stays.
fn retaining(options: EngineOptions) -> EngineOptions {
    options
        .env("ARAGORA_RECEIPT_RETENTION_DAYS", "60")
        .env("ARAGORA_DEBATE_RETENTION_DAYS", "30")
        .env("ARAGORA_RETENTION_BATCH_SIZE", "2")
}

fn database_url(options: &EngineOptions, engine: &Engine) -> String {
    match &options.backend {
        Backend::Sqlite => format!("sqlite://{}", engine.data_dir.join("aragora.db").display()),
        Backend::Postgres(url) => url.clone(),
    }
}

/// A connection of the test's own to the engine's database.
async fn connect(url: &str) -> AnyConnection {
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(url)
        .await
        .expect("the engine's database");
    if url.starts_with("sqlite:") {
        sqlx::query("PRAGMA busy_timeout=10000")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn
}

/// Moves debate `id` (its timestamps, its events', its receipt's) `days` into the past.
async fn age(conn: &mut AnyConnection, id: &str, days: i64) {
    let at = now_ms() - days * DAY_MS;
    for sql in [
        "UPDATE debates SET created_at_ms = $1, started_at_ms = $1, finished_at_ms = $1, \
         updated_at_ms = $1 WHERE id = $2",
        "UPDATE debate_events SET created_at_ms = $1 WHERE debate_id = $2",
        "UPDATE receipts SET issued_at_ms = $1 WHERE debate_id = $2",
    ] {
        sqlx::query(sql)
            .bind(at)
            .bind(id)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
}

async fn count(conn: &mut AnyConnection, sql: &str, id: Option<&str>) -> i64 {
    let mut query = sqlx::query(sql);
    if let Some(id) = id {
        query = query.bind(id);
    }
    query.fetch_one(&mut *conn).await.unwrap().get::<i64, _>(0)
}

async fn rows(conn: &mut AnyConnection) -> BTreeMap<&'static str, i64> {
    let mut counts = BTreeMap::new();
    for table in ["debates", "debate_events", "receipts"] {
        let n = count(conn, &format!("SELECT COUNT(*) FROM {table}"), None).await;
        counts.insert(table, n);
    }
    counts
}

async fn events_of(conn: &mut AnyConnection, id: &str) -> i64 {
    count(
        conn,
        "SELECT COUNT(*) FROM debate_events WHERE debate_id = $1",
        Some(id),
    )
    .await
}

async fn completed_debate(engine: &Engine, topic: &str) -> String {
    let id = engine
        .start_debate(json!({"topic": topic, "rounds": 1}))
        .await;
    let record = engine.wait_final(&id, Duration::from_secs(60)).await;
    assert_eq!(record["status"], "completed", "{record}");
    id
}

/// A debate every agent fails; its id.
async fn failed_debate(engine: &Engine, topic: &str) -> String {
    let record = engine.run_failing_debate(topic).await;
    record["debate_id"].as_str().unwrap().to_string()
}

/// `aragora ARGS` on the engine's database and data directory (keys, backups).
async fn cli(options: &EngineOptions, engine: &Engine, args: &[&str]) -> Value {
    let mut command = crate::support::command_on(options, &engine.data_dir);
    command.args(args);
    let output = tokio::task::spawn_blocking(move || command.output().expect("run aragora"))
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "aragora {args:?}: {}",
        describe_output(&output)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn the_cleanup_deletes_what_is_old_and_only_that_and_a_drill_still_passes(
    options: EngineOptions,
) {
    let options = retaining(options);
    let engine = Engine::start(copy(&options)).await;
    let url = database_url(&options, &engine);
    let mut db = connect(&url).await;

    // x: 45 days old, its receipt (60 days) still kept, so the debate (30 days) stays too.
    // y: 70 days old, receipt and debate both past retention. z: failed 45 days ago, no
    // receipt: past the debate's retention. w: 20 days old, fresh and fresh2: today.
    let x = completed_debate(&engine, "Retention x: tabs or spaces?").await;
    let y = completed_debate(&engine, "Retention y: vim or emacs?").await;
    let z = failed_debate(&engine, "Retention z: monorepo or polyrepo?").await;
    let w = completed_debate(&engine, "Retention w: REST or RPC?").await;
    let fresh = completed_debate(&engine, "Retention: SQL or NoSQL?").await;
    age(&mut db, &x, 45).await;
    age(&mut db, &y, 70).await;
    age(&mut db, &z, 45).await;
    age(&mut db, &w, 20).await;
    let y_events = events_of(&mut db, &y).await;
    let z_events = events_of(&mut db, &z).await;
    assert!(y_events > 2 && z_events > 0, "{y_events} {z_events}");

    // A backup before the cleanup: it must still restore, and a drill pass, afterwards.
    let backup = cli(&options, &engine, &["backup", "create", "--output", "json"]).await;
    let before = rows(&mut db).await;

    // The dry run counts exactly what the cleanup then deletes, and deletes nothing.
    let expected = json!({"receipts": 1, "debates": 2, "events": y_events + z_events});
    for (path, body) in [
        (format!("{CLEANUP}?dry_run=true"), None),
        (CLEANUP.to_string(), Some(json!({"dry_run": true}))),
    ] {
        let mut request = engine.http.post(engine.url(&path));
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let reply: Value = response.json().await.unwrap();
        assert_eq!(reply["dry_run"], true, "{reply}");
        let counted = json!({
            "receipts": reply["receipts_deleted"],
            "debates": reply["debates_deleted"],
            "events": reply["events_deleted"],
        });
        assert_eq!(counted, expected, "{path}: {reply}");
        assert!(reply["run"].is_null(), "{reply}");
    }
    assert_eq!(rows(&mut db).await, before, "a dry run deletes nothing");

    let (status, done) = engine.post_json(CLEANUP, &json!({})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["dry_run"], false, "{done}");
    let deleted = json!({
        "receipts": done["receipts_deleted"],
        "debates": done["debates_deleted"],
        "events": done["events_deleted"],
    });
    assert_eq!(deleted, expected, "{done}");
    assert_eq!(done["run"]["status"], "succeeded", "{done}");
    assert_eq!(done["run"]["trigger"], "manual", "{done}");

    // What users see: y and z are gone, everything else is as it was.
    for gone in [&y, &z] {
        let (status, _) = engine.get(&format!("/api/debates/{gone}")).await;
        assert_eq!(status, 404, "{gone} should be deleted");
        assert_eq!(events_of(&mut db, gone).await, 0);
    }
    for kept in [&x, &w, &fresh] {
        let (status, record) = engine.get(&format!("/api/debates/{kept}")).await;
        assert_eq!(status, 200, "{kept}: {record}");
        let (status, receipt) = engine.get(&format!("/api/debates/{kept}/receipt")).await;
        assert_eq!(status, 200, "{kept}'s receipt: {receipt}");
        assert!(events_of(&mut db, kept).await > 2);
    }
    let after = rows(&mut db).await;
    assert_eq!(after["debates"], before["debates"] - 2);
    assert_eq!(after["receipts"], before["receipts"] - 1);
    assert_eq!(
        after["debate_events"],
        before["debate_events"] - y_events - z_events
    );

    // Once is enough: a second cleanup finds nothing.
    let (status, again) = engine.post_json(CLEANUP, &json!({})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["receipts_deleted"], 0, "{again}");
    assert_eq!(again["debates_deleted"], 0, "{again}");

    let (status, shown) = engine.get(STATUS).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["running"], true, "{shown}");
    assert_eq!(shown["retention_days"], 60, "{shown}");
    assert_eq!(shown["debate_retention_days"], 30, "{shown}");
    assert_eq!(shown["interval_hours"], 24.0, "{shown}");
    assert_eq!(shown["batch_size"], 2, "{shown}");
    assert_eq!(shown["stats"]["total_runs"], 2, "{shown}");
    assert_eq!(shown["stats"]["total_receipts_deleted"], 1, "{shown}");
    assert_eq!(shown["stats"]["total_debates_deleted"], 2, "{shown}");
    assert_eq!(shown["stats"]["success_rate"], 1.0, "{shown}");
    assert_eq!(shown["last_run"]["id"], again["run"]["id"], "{shown}");
    assert!(shown["in_progress"].is_null(), "{shown}");
    assert!(shown["next_run_at"].is_string(), "{shown}");

    let metrics = engine.metrics().await;
    assert_eq!(
        sample(&metrics, "aragora_receipts_deleted_total"),
        Some(1.0)
    );
    assert_eq!(sample(&metrics, "aragora_debates_deleted_total"), Some(2.0));
    assert_eq!(
        sample(
            &metrics,
            "aragora_receipt_cleanup_total{status=\"success\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "aragora_receipt_cleanup_total{status=\"failure\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, "aragora_receipt_cleanup_duration_seconds_count"),
        Some(2.0)
    );

    // The backup from before the cleanup restores whole: the drill checks the restored rows
    // against its manifest (more than the live database now holds), verifies every receipt
    // and runs a debate on the copy.
    let report = cli(&options, &engine, &["drill", "run", "--output", "json"]).await;
    assert_eq!(report["status"], "passed", "{report:#}");
    assert_eq!(report["backup_id"], backup["backup"]["id"], "{report}");
    for table in ["debates", "debate_events", "receipts"] {
        assert_eq!(
            report["restored_rows"][table], backup["backup"]["row_counts"][table],
            "{table}: {report}"
        );
        assert_eq!(
            report["restored_rows"][table].as_i64(),
            Some(before[table]),
            "{table}"
        );
    }
    assert_eq!(report["receipts_verified"], before["receipts"], "{report}");
    assert_ne!(
        report["restored_rows"]["debates"].as_i64(),
        Some(after["debates"]),
        "the manifest, not the live database, is what the drill compares with"
    );
}

/// Inserts `count` finished debates, each with a receipt, `days` old (one transaction): a
/// backlog large enough that a cleanup of one row per batch takes a while.
async fn backlog(conn: &mut AnyConnection, count: usize, days: i64) {
    let at = now_ms() - days * DAY_MS;
    let mut tx = conn.begin().await.unwrap();
    for i in 0..count {
        let id = format!("backlog-{i}-{}", uuid::Uuid::new_v4().simple());
        sqlx::query(
            "INSERT INTO debates (id, topic, status, rounds, agents, consensus_rule, seed, \
             created_at_ms, started_at_ms, finished_at_ms, updated_at_ms, outcome, last_seq) \
             VALUES ($1, 'backlog', 'completed', 1, '[]', 'majority', 1, $2, $2, $2, $2, \
             'consensus', 0)",
        )
        .bind(&id)
        .bind(at)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO receipts (debate_id, body, key_id, issued_at_ms) VALUES ($1, '{}', 'k', $2)",
        )
        .bind(&id)
        .bind(at)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

async fn two_replicas_never_clean_up_at_once(options: EngineOptions) {
    let options = options
        .env("ARAGORA_RECEIPT_RETENTION_DAYS", "30")
        .env("ARAGORA_RETENTION_BATCH_SIZE", "1");
    let a = Engine::start(copy(&options)).await;
    let url = database_url(&options, &a);
    // The second replica on the same database (for SQLite, the same file).
    let b = Engine::start(copy(&options).data_dir(&a.data_dir)).await;
    let mut db = connect(&url).await;
    const OLD: usize = 400;
    backlog(&mut db, OLD, 100).await;

    // Four cleanups asked for at once, two on each replica: one runs, the others are refused
    // while it does.
    let ask = |engine: &Engine| {
        let request = engine.http.post(engine.url(CLEANUP));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let answers = futures::future::join_all([ask(&a), ask(&b), ask(&a), ask(&b)]).await;
    let ran: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 409)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(ran.len(), 1, "{answers:?}");
    assert_eq!(refused.len(), 3, "{answers:?}");
    assert_eq!(ran[0]["receipts_deleted"], OLD as i64, "{answers:?}");
    for refusal in &refused {
        assert_eq!(refusal["error"]["code"], "cleanup_running", "{refusal}");
        let message = refusal["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(ran[0]["run"]["id"].as_str().unwrap()) && message.contains("wait"),
            "{message}"
        );
    }
    assert_eq!(
        count(&mut db, "SELECT COUNT(*) FROM receipts", None).await,
        0
    );
    let runs = count(&mut db, "SELECT COUNT(*) FROM retention_runs", None).await;
    assert_eq!(runs, 1, "only one cleanup ran");
    // Both replicas report the same run.
    let (_, on_b) = b.get(STATUS).await;
    assert_eq!(on_b["last_run"]["id"], ran[0]["run"]["id"], "{on_b}");
}

async fn the_scheduler_runs_each_tick_on_one_replica(options: EngineOptions) {
    let options = options
        .env("ARAGORA_RECEIPT_RETENTION_DAYS", "30")
        .env("ARAGORA_RECEIPT_CLEANUP_INTERVAL_HOURS", "0.0005");
    let a = Engine::start(copy(&options)).await;
    let url = database_url(&options, &a);
    let b = Engine::start(copy(&options).data_dir(&a.data_dir)).await;
    let mut db = connect(&url).await;
    backlog(&mut db, 50, 100).await;
    // Three ticks (1.8 s each) pass with both replicas awake.
    let scheduled = "SELECT COUNT(*) FROM retention_runs WHERE triggered_by = 'scheduled'";
    eventually("three scheduled cleanups", Duration::from_secs(60), || {
        let url = url.clone();
        async move {
            let mut db = connect(&url).await;
            (count(&mut db, scheduled, None).await >= 3).then_some(())
        }
    })
    .await;
    assert_eq!(
        count(&mut db, "SELECT COUNT(*) FROM receipts", None).await,
        0
    );
    // One run per tick, whichever replica woke first; never two at once.
    let ticks = count(
        &mut db,
        "SELECT COUNT(*) FROM scheduled_runs WHERE job = 'receipt-retention'",
        None,
    )
    .await;
    let runs = sqlx::query(
        "SELECT started_at_ms, finished_at_ms FROM retention_runs ORDER BY started_at_ms",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert!(
        runs.len() as i64 <= ticks,
        "{} runs, {ticks} ticks",
        runs.len()
    );
    let spans: Vec<(i64, i64)> = runs
        .iter()
        .map(|row| (row.get(0), row.get::<Option<i64>, _>(1).unwrap_or(i64::MAX)))
        .collect();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "runs overlap: {spans:?}");
    }
    let (_, status) = b.get(STATUS).await;
    assert_eq!(status["last_run"]["trigger"], "scheduled", "{status}");
    assert_eq!(status["stats"]["total_receipts_deleted"], 50, "{status}");
    // The scheduler keeps ticking: a run may land between two reads, so the two replicas are
    // read until one pair of reads falls between runs.
    eventually(
        "both replicas to report the same history",
        Duration::from_secs(30),
        || async {
            let (_, on_b) = b.get(STATUS).await;
            let (_, on_a) = a.get(STATUS).await;
            (on_a["stats"] == on_b["stats"]).then_some(())
        },
    )
    .await;
}

async fn system_errors_show_a_failed_debate_to_admins_only(options: EngineOptions) {
    let secret = format!("jwt-{}", uuid::Uuid::new_v4().simple());
    let engine = Engine::start(options.env("ARAGORA_JWT_SECRET", &secret)).await;
    let failed = failed_debate(&engine, "Errors: does this debate fail?").await;
    let (status, listed) = engine.get("/api/system/errors?limit=50").await;
    assert_eq!(status, 200, "{listed}");
    let errors = listed["errors"].as_array().unwrap();
    let debate = errors
        .iter()
        .find(|e| e["kind"] == "debate_failed")
        .unwrap_or_else(|| panic!("no debate_failed: {listed}"));
    assert_eq!(debate["debate_id"], failed.as_str(), "{debate}");
    assert!(
        debate["message"]
            .as_str()
            .unwrap()
            .contains("every agent failed"),
        "{debate}"
    );
    assert!(debate["at"].is_string(), "{debate}");
    let agent = errors
        .iter()
        .find(|e| e["kind"] == "agent_error")
        .unwrap_or_else(|| panic!("no agent_error: {listed}"));
    assert_eq!(agent["debate_id"], failed.as_str(), "{agent}");
    assert!(agent["agent"].is_string(), "{agent}");
    // Newest first, and no secret in any of it.
    let times: Vec<&str> = errors.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted);
    let text = listed.to_string();
    assert!(!text.contains(engine.token.as_deref().unwrap()), "{text}");
    assert!(!text.contains(&secret), "{text}");

    let (status, one) = engine.get("/api/system/errors?limit=1").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["errors"].as_array().unwrap().len(), 1, "{one}");

    for (query, says) in [
        ("limit=0", "ARAGORA_MAX_LIST_LIMIT"),
        ("limit=101", "ARAGORA_MAX_LIST_LIMIT"),
        ("limit=-3", "ARAGORA_MAX_LIST_LIMIT"),
        ("limit=many", "limit"),
    ] {
        let (status, refused) = engine.get(&format!("/api/system/errors?{query}")).await;
        assert_eq!(status, 400, "{query}: {refused}");
        assert_eq!(refused["error"]["code"], "invalid_request", "{refused}");
        assert!(
            refused["error"]["message"].as_str().unwrap().contains(says),
            "{query}: {refused}"
        );
    }

    // Readers see neither the errors nor the scheduler.
    let reader = reader_client(&engine).await;
    for (method, path) in [
        (reqwest::Method::GET, "/api/system/errors"),
        (reqwest::Method::GET, STATUS),
        (reqwest::Method::POST, CLEANUP),
    ] {
        let response = reader
            .request(method.clone(), engine.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
    }
    let anonymous = reqwest::Client::new()
        .get(engine.url("/api/system/errors"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// Behind a load balancer every replica lists the same errors: a debate failed on replica A
/// is in B's `GET /api/system/errors` (the shared table), and A lists it once.
async fn errors_recorded_on_one_replica_are_listed_by_another(options: EngineOptions) {
    let a = Engine::start(copy(&options)).await;
    let b = Engine::start(copy(&options).data_dir(&a.data_dir)).await;
    let failed = failed_debate(&a, "Errors: seen from the other replica?").await;
    let listed = eventually(
        "B to list A's failed debate",
        Duration::from_secs(30),
        || async {
            let (status, listed) = b.get("/api/system/errors?limit=50").await;
            assert_eq!(status, 200, "{listed}");
            listed["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "debate_failed" && e["debate_id"] == failed.as_str())
                .then_some(listed)
        },
    )
    .await;
    assert!(
        listed["scope"].as_str().unwrap().contains("every replica"),
        "{listed}"
    );
    // A lists it once (its memory and the table hold the same error).
    let (_, on_a) = a.get("/api/system/errors?limit=50").await;
    let on_a_failed = on_a["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "debate_failed")
        .count();
    assert_eq!(on_a_failed, 1, "{on_a}");
    let mut db = connect(&database_url(&options, &a)).await;
    let stored = sqlx::query("SELECT message FROM system_errors")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert!(!stored.is_empty());
    let token = a.token.clone().unwrap();
    for row in &stored {
        let message: String = row.get(0);
        assert!(!message.contains(&token), "a secret was stored: {message}");
    }
}

async fn left(db: &mut AnyConnection) -> Vec<String> {
    sqlx::query("SELECT id FROM webhook_deliveries ORDER BY id")
        .fetch_all(&mut *db)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect()
}

/// Webhook deliveries keep their bodies (debate content): the cleanup deletes the finished
/// ones (delivered, dead) past `ARAGORA_WEBHOOK_DELIVERY_RETENTION_DAYS` in batches, counts
/// them in the dry run, the run, the status and the metrics, and keeps pending ones and fresh
/// ones whatever their age.
async fn finished_webhook_deliveries_past_retention_are_deleted(options: EngineOptions) {
    let options = options
        .env("ARAGORA_WEBHOOK_DELIVERY_RETENTION_DAYS", "30")
        .env("ARAGORA_RETENTION_BATCH_SIZE", "2")
        .env(
            "ARAGORA_WEBHOOK_ENCRYPTION_KEY",
            "webhook-encryption-key-for-the-e2e-tests-0001",
        );
    let engine = Engine::start(copy(&options)).await;
    let mut db = connect(&database_url(&options, &engine)).await;
    let now = now_ms();
    // Paused: the worker leaves its pending deliveries alone.
    sqlx::query(
        "INSERT INTO webhook_subscriptions (id, owner, url, event_types, secret_sealed, enabled, \
         created_at_ms, updated_at_ms) VALUES ('wh_old', 'admin', 'https://93.184.216.34/hook', \
         'debate_end', NULL, 0, $1, $2)",
    )
    .bind(now - 90 * DAY_MS)
    .bind(now - 90 * DAY_MS)
    .execute(&mut db)
    .await
    .unwrap();
    // Five old finished (three delivered, two dead), one old pending, two fresh finished.
    let rows: [(&str, &str, i64); 8] = [
        ("dlv_old1", "delivered", 40),
        ("dlv_old2", "delivered", 31),
        ("dlv_old3", "delivered", 365),
        ("dlv_old4", "dead", 45),
        ("dlv_old5", "dead", 60),
        ("dlv_pending", "pending", 50),
        ("dlv_fresh1", "delivered", 1),
        ("dlv_fresh2", "dead", 29),
    ];
    for (id, state, days) in rows {
        let at = now - days * DAY_MS;
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, subscription_id, event_type, body, state, \
             attempts, next_attempt_at_ms, created_at_ms, updated_at_ms) \
             VALUES ($1, 'wh_old', 'debate_end', '{\"data\": \"debate content\"}', $2, 1, $3, $4, $5)",
        )
        .bind(id)
        .bind(state)
        .bind(at)
        .bind(at)
        .bind(at)
        .execute(&mut db)
        .await
        .unwrap();
    }

    let (status, dry) = engine
        .post_json(&format!("{CLEANUP}?dry_run=true"), &json!({}))
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["deliveries_deleted"], 5, "{dry}");
    assert!(dry["deliveries_before"].is_string(), "{dry}");
    assert_eq!(left(&mut db).await.len(), 8, "a dry run deletes nothing");

    let (status, ran) = engine.post_json(CLEANUP, &json!({})).await;
    assert_eq!(status, 200, "{ran}");
    assert_eq!(ran["deliveries_deleted"], 5, "{ran}");
    assert_eq!(ran["run"]["deliveries_deleted"], 5, "{ran}");
    assert_eq!(
        left(&mut db).await,
        ["dlv_fresh1", "dlv_fresh2", "dlv_pending"],
        "only the old finished ones go"
    );
    let (_, shown) = engine.get(STATUS).await;
    assert_eq!(shown["last_run"]["deliveries_deleted"], 5, "{shown}");
    assert_eq!(shown["stats"]["total_deliveries_deleted"], 5, "{shown}");
    assert_eq!(
        shown["settings"]["webhook_delivery_retention_days"], 30,
        "{shown}"
    );
    let metrics = engine.metrics().await;
    assert_eq!(
        sample(&metrics, "aragora_webhook_deliveries_deleted_total"),
        Some(5.0),
        "{metrics}"
    );
    // The dead-letter queue lost its old dead ones, not the fresh one.
    let (_, dead) = engine.get("/api/admin/webhooks/dead-letters").await;
    assert_eq!(dead["total"], 1, "{dead}");
}

async fn reader_client(engine: &Engine) -> reqwest::Client {
    let (status, minted) = engine
        .post_json("/api/auth/token", &json!({"role": "reader"}))
        .await;
    assert_eq!(status, 200, "{minted}");
    with_bearer(reqwest::Client::builder(), minted["token"].as_str())
        .build()
        .unwrap()
}

on_both_backends!(
    the_cleanup_deletes_what_is_old_and_only_that_and_a_drill_still_passes,
    two_replicas_never_clean_up_at_once,
    the_scheduler_runs_each_tick_on_one_replica,
    system_errors_show_a_failed_debate_to_admins_only,
    errors_recorded_on_one_replica_are_listed_by_another,
    finished_webhook_deliveries_past_retention_are_deleted,
);

/// A bad cleanup request: query, body, then the status, code and words of the answer.
type BadCleanup = (
    &'static str,
    Option<&'static str>,
    u16,
    &'static str,
    &'static [&'static str],
);

/// Every kind of bad input to the cleanup: the right 4xx in the API's envelope, saying what
/// to fix, and nothing deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cleanup_requests_are_refused_and_delete_nothing() {
    let options = EngineOptions::sqlite().env("ARAGORA_RECEIPT_RETENTION_DAYS", "30");
    let engine = Engine::start(copy(&options)).await;
    let mut db = connect(&database_url(&options, &engine)).await;
    backlog(&mut db, 3, 100).await;
    let cases: [BadCleanup; 7] = [
        ("?dry_run=maybe", None, 400, "invalid_request", &["dry_run"]),
        ("?dryrun=true", None, 400, "invalid_request", &["dryrun"]),
        (
            "",
            Some("{not json"),
            400,
            "invalid_request",
            &["not valid JSON", "dry_run"],
        ),
        (
            "",
            Some(r#"{"dry_run": "yes"}"#),
            422,
            "validation_failed",
            &["dry_run"],
        ),
        (
            "",
            Some(r#"{"dryrun": true}"#),
            422,
            "validation_failed",
            &["dryrun"],
        ),
        (
            "",
            Some("[true]"),
            422,
            "validation_failed",
            &["JSON object"],
        ),
        (
            "?dry_run=true",
            Some(r#"{"dry_run": false}"#),
            422,
            "validation_failed",
            &["give it once"],
        ),
    ];
    for (query, body, status, code, says) in cases {
        let mut request = engine.http.post(engine.url(&format!("{CLEANUP}{query}")));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let got = response.status().as_u16();
        let reply: Value = response.json().await.unwrap();
        assert_eq!(got, status, "{query} {body:?}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{query} {body:?}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        for part in says {
            assert!(message.contains(part), "{query} {body:?}: {message}");
        }
    }
    assert_eq!(
        count(&mut db, "SELECT COUNT(*) FROM receipts", None).await,
        3
    );
    assert_eq!(
        count(&mut db, "SELECT COUNT(*) FROM retention_runs", None).await,
        0
    );
}

/// A setting out of range stops the engine before it starts, naming the setting and the range.
#[test]
fn bad_retention_settings_are_refused_at_start() {
    for (name, value, says) in [
        (
            "ARAGORA_RECEIPT_RETENTION_DAYS",
            "-1",
            "ARAGORA_RECEIPT_RETENTION_DAYS",
        ),
        ("ARAGORA_RECEIPT_RETENTION_DAYS", "40000", "36500"),
        ("ARAGORA_RECEIPT_CLEANUP_INTERVAL_HOURS", "0", "8760"),
        (
            "ARAGORA_DEBATE_RETENTION_DAYS",
            "forever",
            "ARAGORA_DEBATE_RETENTION_DAYS",
        ),
        ("ARAGORA_RETENTION_BATCH_SIZE", "0", "5000"),
        ("ARAGORA_WEBHOOK_DELIVERY_RETENTION_DAYS", "40000", "36500"),
        (
            "ARAGORA_WEBHOOK_DELIVERY_RETENTION_DAYS",
            "a month",
            "ARAGORA_WEBHOOK_DELIVERY_RETENTION_DAYS",
        ),
    ] {
        let output = aragora_command()
            .arg("validate-env")
            .env(name, value)
            .output()
            .unwrap();
        let text = describe_output(&output);
        assert_eq!(output.status.code(), Some(78), "{name}={value}: {text}");
        assert!(
            text.contains(name) && text.contains(says),
            "{name}={value}: {text}"
        );
    }
}
