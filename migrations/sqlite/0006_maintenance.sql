-- Maintenance mode (the Self-Hosted Guide's 7.4): one row, shared by every replica, so an
-- admin's enable on one replica refuses new debates on all of them (each reads it through a
-- cache of at most 1 s). `changed_by`/`changed_at_ms` say who set the current state and when.
CREATE TABLE maintenance (
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    enabled              INTEGER NOT NULL DEFAULT 0,
    reason               TEXT,
    retry_after_seconds  INTEGER NOT NULL DEFAULT 60,
    changed_by           TEXT,
    changed_at_ms        INTEGER
);
INSERT INTO maintenance (id, enabled) VALUES (1, 0);
