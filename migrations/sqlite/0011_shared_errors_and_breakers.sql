-- What every replica must see the same (issue 19's audit): the recent errors behind
-- GET /api/system/errors, and the circuit breaker of each webhook receiver endpoint.
--
-- system_errors: the newest 1000 errors of all replicas (each insert prunes the oldest beyond
-- that), messages already scrubbed of the configuration's secrets and cut to 1000 characters;
-- `id` is the entry's own (the recording replica also keeps it in memory and lists it once);
-- `replica` is the lease owner id of the replica that recorded it.
CREATE TABLE system_errors (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    at_ms      INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    message    TEXT NOT NULL,
    debate_id  TEXT,
    agent      TEXT,
    replica    TEXT NOT NULL
);
CREATE INDEX system_errors_by_time ON system_errors (at_ms);

-- webhook_breakers: one row per receiver endpoint (scheme://host[:port]) that has failed since
-- its last success (no row: closed). Open while open_until_ms is in the future, half-open
-- after it; a half-open endpoint lets one trial delivery through, the one whose replica set
-- trial_until_ms (a lease, taken by a conditional UPDATE).
CREATE TABLE webhook_breakers (
    endpoint        TEXT PRIMARY KEY,
    failures        INTEGER NOT NULL,
    open_until_ms   INTEGER,
    trial_until_ms  INTEGER,
    updated_at_ms   INTEGER NOT NULL
);

-- Finished webhook deliveries (delivered or dead) carry debate content in their bodies: the
-- retention cleanup deletes those last changed before ARAGORA_WEBHOOK_DELIVERY_RETENTION_DAYS,
-- in batches found by this index, and records how many per run.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (state, updated_at_ms);
ALTER TABLE retention_runs ADD COLUMN deliveries_deleted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE retention_runs ADD COLUMN deliveries_before_ms INTEGER;
