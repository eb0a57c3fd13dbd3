-- Retention (the runbooks' Receipt Retention Scheduler): receipts past
-- ARAGORA_RECEIPT_RETENTION_DAYS and finished debates past ARAGORA_DEBATE_RETENTION_DAYS are
-- deleted in small batches. The indexes let each batch find its oldest rows without a scan.
CREATE INDEX receipts_by_issued ON receipts (issued_at_ms);
CREATE INDEX debates_by_finished ON debates (finished_at_ms);

-- One cleanup at a time across replicas: a run holds this row's lease (renewed before each
-- batch), so a second replica's run, scheduled or asked for, is refused while it lasts.
CREATE TABLE retention_lease (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    holder         TEXT,
    run_id         TEXT,
    expires_at_ms  INTEGER
);
INSERT INTO retention_lease (id) VALUES (1);

-- Every cleanup run (the newest 1000 are kept), so the status endpoint of every replica shows
-- the same last run and totals.
CREATE TABLE retention_runs (
    id                  TEXT PRIMARY KEY,
    holder              TEXT NOT NULL,
    triggered_by        TEXT NOT NULL,
    started_at_ms       INTEGER NOT NULL,
    finished_at_ms      INTEGER,
    status              TEXT NOT NULL,
    receipts_deleted    INTEGER NOT NULL DEFAULT 0,
    debates_deleted     INTEGER NOT NULL DEFAULT 0,
    events_deleted      INTEGER NOT NULL DEFAULT 0,
    receipts_before_ms  INTEGER,
    debates_before_ms   INTEGER,
    error               TEXT
);
CREATE INDEX retention_runs_by_started ON retention_runs (started_at_ms);
