-- Disaster-recovery bookkeeping: each backup taken and each DR drill run, so every replica's
-- /metrics and GET /api/drills report the same history, whichever process did the work.
CREATE TABLE backups (
    id             TEXT PRIMARY KEY,
    created_at_ms  INTEGER NOT NULL,
    backend        TEXT NOT NULL,
    bytes          INTEGER NOT NULL,
    sha256         TEXT NOT NULL
);
CREATE INDEX backups_by_created ON backups (created_at_ms);

CREATE TABLE drills (
    id                  TEXT PRIMARY KEY,
    started_at_ms       INTEGER NOT NULL,
    finished_at_ms      INTEGER NOT NULL,
    status              TEXT NOT NULL,
    backup_id           TEXT,
    rto_seconds         REAL,
    rpo_seconds         REAL,
    rto_target_seconds  REAL NOT NULL,
    rpo_target_seconds  REAL NOT NULL,
    report              TEXT NOT NULL
);
CREATE INDEX drills_by_started ON drills (started_at_ms);
