-- Disaster-recovery bookkeeping: each backup taken and each DR drill run, so every replica's
-- /metrics and GET /api/drills report the same history, whichever process did the work.
CREATE TABLE backups (
    id             TEXT PRIMARY KEY,
    created_at_ms  BIGINT NOT NULL,
    backend        TEXT NOT NULL,
    bytes          BIGINT NOT NULL,
    sha256         TEXT NOT NULL
);
CREATE INDEX backups_by_created ON backups (created_at_ms);

CREATE TABLE drills (
    id                  TEXT PRIMARY KEY,
    started_at_ms       BIGINT NOT NULL,
    finished_at_ms      BIGINT NOT NULL,
    status              TEXT NOT NULL,
    backup_id           TEXT,
    rto_seconds         DOUBLE PRECISION,
    rpo_seconds         DOUBLE PRECISION,
    rto_target_seconds  DOUBLE PRECISION NOT NULL,
    rpo_target_seconds  DOUBLE PRECISION NOT NULL,
    report              TEXT NOT NULL
);
CREATE INDEX drills_by_started ON drills (started_at_ms);
