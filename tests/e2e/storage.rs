//! The storage suite, run unchanged against SQLite and PostgreSQL through the `DebateStore` trait.

use crate::support::TestDatabase;
use aragora_engine::config::DbBackend;
use aragora_engine::model::{
    now_ms, ConsensusRule, DebateEvent, DebateRecord, DebateStatus, EventKind, Outcome,
    StatusUpdate,
};
use aragora_engine::store::{DebateStore, SqlStore, StoredReceipt, MIGRATION_LOCK_ID};
use serde_json::json;
use std::time::Duration;

fn record(id: &str, created_at_ms: i64) -> DebateRecord {
    DebateRecord {
        id: id.to_string(),
        topic: format!("topic of {id}"),
        status: DebateStatus::Queued,
        rounds: 3,
        agents: vec!["offline-skeptic".into(), "offline-optimist".into()],
        consensus_rule: ConsensusRule::Supermajority,
        seed: -42,
        created_at_ms,
        started_at_ms: None,
        finished_at_ms: None,
        updated_at_ms: created_at_ms,
        outcome: None,
        consensus_reached: None,
        final_answer: None,
        error: None,
        last_seq: 0,
        created_by: Some("key:0123456789ab".into()),
        ..DebateRecord::queued(
            String::new(),
            String::new(),
            0,
            Vec::new(),
            ConsensusRule::Majority,
            0,
            0,
        )
    }
}

fn event(id: &str, seq: i64, kind: EventKind) -> DebateEvent {
    DebateEvent::new(
        id,
        seq,
        kind,
        Some(1),
        Some("offline-skeptic"),
        json!({"text": format!("event {seq}")}),
        now_ms(),
    )
}

async fn the_store_keeps_debates_and_events_exactly(store: SqlStore) {
    store.migrate().await.unwrap();
    store.migrate().await.expect("migrations are idempotent");
    assert!(store.ping().await.unwrap() < Duration::from_secs(1));
    let base = now_ms();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        store
            .insert_debate(&record(id, base + i as i64))
            .await
            .unwrap();
    }
    assert!(
        store.insert_debate(&record("a", base)).await.is_err(),
        "ids are unique"
    );
    let a = store.debate("a").await.unwrap().unwrap();
    assert_eq!(
        a,
        record("a", base),
        "a record reads back exactly as written"
    );
    assert!(store.debate("zzz").await.unwrap().is_none());

    // Events: appended in seq order together with the status change they carry.
    let started = StatusUpdate {
        started_at_ms: Some(base + 10),
        ..StatusUpdate::to(DebateStatus::Running)
    };
    store
        .append_event(
            &event("a", 1, EventKind::DebateStart),
            Some(&started),
            None,
            None,
        )
        .await
        .unwrap();
    for seq in 2..=5 {
        store
            .append_event(&event("a", seq, EventKind::AgentMessage), None, None, None)
            .await
            .unwrap();
    }
    let running = store.debate("a").await.unwrap().unwrap();
    assert_eq!(
        (running.status, running.started_at_ms, running.last_seq),
        (DebateStatus::Running, Some(base + 10), 5)
    );

    // A duplicate seq is refused and leaves nothing half-written, not even its receipt.
    let receipt = StoredReceipt {
        body: "{\"signed\":true}".into(),
        key_id: "k".into(),
    };
    let duplicate = event("a", 5, EventKind::DebateEnd);
    let finish = StatusUpdate {
        outcome: Some(Outcome::Consensus),
        ..StatusUpdate::to(DebateStatus::Completed)
    };
    assert!(store
        .append_event(&duplicate, Some(&finish), Some(&receipt), None)
        .await
        .is_err());
    assert_eq!(store.receipt("a").await.unwrap(), None);
    let unchanged = store.debate("a").await.unwrap().unwrap();
    assert_eq!(
        (unchanged.status, unchanged.last_seq, unchanged.outcome),
        (DebateStatus::Running, 5, None)
    );

    let tail = store.events_after("a", 2, 100).await.unwrap();
    assert_eq!(
        tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(tail[0].data, json!({"text": "event 3"}));
    assert_eq!(tail[0].agent.as_deref(), Some("offline-skeptic"));
    assert_eq!(
        store.events_after("a", 0, 2).await.unwrap().len(),
        2,
        "limit is honoured"
    );

    let end = StatusUpdate {
        finished_at_ms: Some(base + 20),
        outcome: Some(Outcome::Consensus),
        consensus_reached: Some(true),
        final_answer: Some("answer".into()),
        ..StatusUpdate::to(DebateStatus::Completed)
    };
    store
        .append_event(
            &event("a", 6, EventKind::DebateEnd),
            Some(&end),
            Some(&receipt),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        store.receipt("a").await.unwrap().as_deref(),
        Some("{\"signed\":true}")
    );
    assert_eq!(store.receipt("b").await.unwrap(), None);
    let done = store.debate("a").await.unwrap().unwrap();
    assert_eq!(done.status, DebateStatus::Completed);
    assert_eq!(done.outcome, Some(Outcome::Consensus));
    assert_eq!(done.consensus_reached, Some(true));
    assert_eq!(done.final_answer.as_deref(), Some("answer"));
    assert_eq!(
        done.started_at_ms,
        Some(base + 10),
        "earlier fields are kept"
    );

    // Guarded transitions only apply from the states given.
    let cancel = StatusUpdate::to(DebateStatus::Cancelled);
    assert!(!store
        .transition(
            "a",
            &[DebateStatus::Queued, DebateStatus::Running],
            &cancel,
            None
        )
        .await
        .unwrap());
    assert!(store
        .transition("b", &[DebateStatus::Queued], &cancel, None)
        .await
        .unwrap());
    assert_eq!(
        store.debate("b").await.unwrap().unwrap().status,
        DebateStatus::Cancelled
    );

    // Listing: newest first, filtered, paged, with the total.
    let all = store.list_debates(&[], 10, 0).await.unwrap();
    assert_eq!(all.total, 3);
    assert_eq!(
        all.debates
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>(),
        vec!["c", "b", "a"]
    );
    let page = store.list_debates(&[], 1, 1).await.unwrap();
    assert_eq!((page.total, page.debates[0].id.as_str()), (3, "b"));
    let finished = store
        .list_debates(&[DebateStatus::Completed, DebateStatus::Cancelled], 10, 0)
        .await
        .unwrap();
    assert_eq!(finished.total, 2);
    let queued = store.debates_in(&[DebateStatus::Queued]).await.unwrap();
    assert_eq!(
        queued.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["c"]
    );
    the_dr_log_keeps_backups_and_drills(&store).await;
    leases_admit_one_claimer_and_fence_the_writers_that_lost_them(&store).await;
    store.close().await;
}

/// Leases (migration 0005) on the same backend: one claim of an expired lease wins, a write
/// under the lost lease changes nothing, renewals answer what is still held and carry cancel
/// requests.
async fn leases_admit_one_claimer_and_fence_the_writers_that_lost_them(store: &SqlStore) {
    use aragora_engine::model::{Fence, Lease};
    use aragora_engine::store::{Claim, StoreError};
    let now = now_ms();
    let mut held = record("leased", now);
    held.lease = Lease {
        owner: Some("replica-a".into()),
        epoch: 1,
        expires_at_ms: Some(now + 60_000),
    };
    store.insert_debate(&held).await.unwrap();
    let a = Fence {
        owner: "replica-a".into(),
        epoch: 1,
    };
    store
        .append_event(
            &event("leased", 1, EventKind::DebateStart),
            None,
            None,
            Some(&a),
        )
        .await
        .expect("the holder writes");
    let claim = |owner, only_expired| Claim {
        owner,
        seen_epoch: 1,
        now_ms: now,
        expires_at_ms: now + 15_000,
        only_expired,
        unleased_grace_ms: 1_000,
    };
    assert!(
        !store
            .claim("leased", &claim("replica-b", true))
            .await
            .unwrap(),
        "a live lease is not taken"
    );
    assert!(store
        .adoptable(now, 1_000, 10)
        .await
        .unwrap()
        .iter()
        .all(|d| d.id != "leased"));
    let renewed = store
        .renew_leases("replica-a", &["leased".into(), "a".into()], now - 1)
        .await
        .unwrap();
    assert_eq!(
        renewed
            .iter()
            .map(|r| (r.id.as_str(), r.cancel_requested))
            .collect::<Vec<_>>(),
        [("leased", false)],
        "only what the owner holds is renewed"
    );
    // Now expired (renewed into the past): listed for adoption, and of two claims on the
    // epoch seen, one wins.
    let adoptable = store.adoptable(now, 1_000, 10).await.unwrap();
    assert!(adoptable.iter().any(|d| d.id == "leased"), "{adoptable:?}");
    assert!(store
        .claim("leased", &claim("replica-b", true))
        .await
        .unwrap());
    assert!(!store
        .claim("leased", &claim("replica-c", true))
        .await
        .unwrap());
    let taken = store.debate("leased").await.unwrap().unwrap();
    assert_eq!(
        taken.lease,
        Lease {
            owner: Some("replica-b".into()),
            epoch: 2,
            expires_at_ms: Some(now + 15_000)
        }
    );
    // The old holder's writes are refused and leave nothing behind.
    let stale = store
        .append_event(
            &event("leased", 2, EventKind::AgentMessage),
            None,
            None,
            Some(&a),
        )
        .await;
    assert!(matches!(stale, Err(StoreError::Fenced { .. })), "{stale:?}");
    let cancel = StatusUpdate::to(DebateStatus::Cancelled);
    assert!(!store
        .transition("leased", &[DebateStatus::Queued], &cancel, Some(&a))
        .await
        .unwrap());
    assert!(store
        .renew_leases("replica-a", &["leased".into()], now + 15_000)
        .await
        .unwrap()
        .is_empty());
    let b = Fence {
        owner: "replica-b".into(),
        epoch: 2,
    };
    store
        .append_event(
            &event("leased", 2, EventKind::AgentMessage),
            None,
            None,
            Some(&b),
        )
        .await
        .expect("the new holder writes the next seq");
    assert_eq!(store.events_after("leased", 0, 10).await.unwrap().len(), 2);
    // A cancel for the holder reaches it with its next renewal.
    assert!(store.request_cancel("leased", "admin", now).await.unwrap());
    let renewed = store
        .renew_leases("replica-b", &["leased".into()], now + 15_000)
        .await
        .unwrap();
    assert_eq!(renewed.len(), 1);
    assert!(renewed[0].cancel_requested);
    assert_eq!(
        store
            .debate("leased")
            .await
            .unwrap()
            .unwrap()
            .cancel_requested_at_ms,
        Some(now)
    );
    assert!(
        !store.request_cancel("a", "admin", now).await.unwrap(),
        "an ended debate takes no cancel request"
    );
}

/// The DR log (migration 0003) on the same backend: latest backup, latest passed drill, and
/// the latest drill's RTO/RPO even when it failed.
async fn the_dr_log_keeps_backups_and_drills(store: &SqlStore) {
    use aragora_engine::dr_log::{BackupRecord, DrStatus, DrillRecord};
    assert_eq!(store.dr_status().await.unwrap(), DrStatus::default());
    for (id, at) in [("b1", 1_000), ("b2", 2_000)] {
        let backup = BackupRecord {
            id: id.into(),
            created_at_ms: at,
            backend: "sqlite".into(),
            bytes: 42,
            sha256: "ab".repeat(32),
        };
        store.record_backup(&backup).await.unwrap();
    }
    let drill = |id: &str, at: i64, status: &str, rto: Option<f64>| DrillRecord {
        id: id.into(),
        started_at_ms: at,
        finished_at_ms: at + 500,
        status: status.into(),
        backup_id: Some("b2".into()),
        rto_seconds: rto,
        rpo_seconds: Some(1.5),
        rto_target_seconds: 3600.0,
        rpo_target_seconds: 300.0,
        report: "{}".into(),
    };
    store
        .record_drill(&drill("d1", 3_000, "passed", Some(0.25)))
        .await
        .unwrap();
    store
        .record_drill(&drill("d2", 4_000, "failed", None))
        .await
        .unwrap();
    let status = store.dr_status().await.unwrap();
    assert_eq!(status.last_backup_ms, Some(2_000));
    assert_eq!(status.last_drill_success_ms, Some(3_500));
    assert_eq!(
        status.last_drill_rto_seconds, None,
        "the latest drill never got ready"
    );
    assert_eq!(status.last_drill_rpo_seconds, Some(1.5));
    let drills = store.drills(10).await.unwrap();
    assert_eq!(
        drills.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["d2", "d1"]
    );
    assert_eq!(drills[1], drill("d1", 3_000, "passed", Some(0.25)));
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("aragora.db").display()
    );
    let store = SqlStore::connect(DbBackend::Sqlite, &url, 4).await.unwrap();
    the_store_keeps_debates_and_events_exactly(store).await;
}

#[tokio::test]
async fn postgres_store() {
    let database = TestDatabase::create().await;
    let store = SqlStore::connect(DbBackend::Postgres, &database.url, 4)
        .await
        .unwrap();
    the_store_keeps_debates_and_events_exactly(store).await;
}

/// A replica frozen inside a transaction (SIGSTOP, a paused VM) must not hold its row locks
/// until it wakes: PostgreSQL ends a store session left idle in a transaction after
/// `POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT`, and another writer gets the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_session_frozen_inside_a_transaction_loses_its_row_locks() {
    use aragora_engine::store::POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT;
    use sqlx::Connection;
    let database = TestDatabase::create().await;
    let store = SqlStore::connect(DbBackend::Postgres, &database.url, 2)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
        .insert_debate(&record("frozen", now_ms()))
        .await
        .unwrap();
    // The frozen writer: a store session that locks the row, then says nothing more.
    let mut frozen = store.pool().acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *frozen).await.unwrap();
    sqlx::query("SELECT id FROM debates WHERE id = 'frozen' FOR UPDATE")
        .execute(&mut *frozen)
        .await
        .unwrap();

    let mut other = sqlx::PgConnection::connect(&database.url).await.unwrap();
    sqlx::query("SET lock_timeout = '60s'")
        .execute(&mut other)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    sqlx::query("UPDATE debates SET topic = 'adopted' WHERE id = 'frozen'")
        .execute(&mut other)
        .await
        .expect("the row lock is released when the server ends the frozen session");
    let waited = started.elapsed();
    assert!(
        waited >= POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT - Duration::from_secs(1),
        "the lock was not held at all ({waited:?}): the test froze nothing"
    );
    // The frozen session is gone: its next statement fails instead of writing.
    let woke = sqlx::query("UPDATE debates SET topic = 'stale' WHERE id = 'frozen'")
        .execute(&mut *frozen)
        .await;
    assert!(woke.is_err(), "the frozen session wrote after waking");
    let topic: String = sqlx::query_scalar("SELECT topic FROM debates WHERE id = 'frozen'")
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(topic, "adopted");
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("aragora.db").display()
    );
    let store = SqlStore::connect(DbBackend::Sqlite, &url, 1).await.unwrap();
    store.migrate().await.unwrap();
    store.close().await;
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrations_wait_for_the_runbook_advisory_lock() {
    let database = TestDatabase::create().await;
    use sqlx::Connection;
    // Another replica holds the migration lock.
    let mut holder = sqlx::PgConnection::connect(&database.url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK_ID)
        .execute(&mut holder)
        .await
        .unwrap();

    let (waiting_tx, mut waiting_rx) = tokio::sync::mpsc::unbounded_channel();
    let replicas: Vec<_> = (0..3)
        .map(|replica| {
            let url = database.url.clone();
            let waiting = waiting_tx.clone();
            tokio::spawn(async move {
                let store = SqlStore::connect(DbBackend::Postgres, &url, 2)
                    .await
                    .unwrap();
                let mut on_wait = |report: &aragora_engine::schema::Waiting| {
                    let _ = waiting.send((replica, report.holder.clone()));
                };
                aragora_engine::schema::upgrade(&store, Duration::from_secs(60), &mut on_wait)
                    .await
                    .map(|_| store)
            })
        })
        .collect();
    // All three find the lock taken (pg_try_advisory_lock), say whose session holds it, and
    // while it is held none has created the schema.
    let holder_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    let mut reported = std::collections::BTreeSet::new();
    while reported.len() < 3 {
        let (replica, named) = tokio::time::timeout(Duration::from_secs(30), waiting_rx.recv())
            .await
            .expect("every replica reports the held lock")
            .expect("a report");
        assert_eq!(named.map(|h| h.pid), Some(i64::from(holder_pid)));
        reported.insert(replica);
    }
    let created: Option<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables WHERE table_name = 'debates'",
    )
    .fetch_optional(&mut holder)
    .await
    .unwrap();
    assert!(
        created.is_none(),
        "a replica migrated while another held lock {MIGRATION_LOCK_ID}"
    );
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK_ID)
        .execute(&mut holder)
        .await
        .unwrap();
    for replica in replicas {
        let store = replica
            .await
            .unwrap()
            .expect("every replica migrates once the lock is free");
        store
            .insert_debate(&record(&uuid::Uuid::new_v4().to_string(), now_ms()))
            .await
            .unwrap();
        store.close().await;
    }
}
