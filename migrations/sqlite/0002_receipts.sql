-- Signed receipts of completed debates, written in the same transaction as the debate's end.
CREATE TABLE receipts (
    debate_id     TEXT PRIMARY KEY REFERENCES debates (id) ON DELETE CASCADE,
    body          TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    issued_at_ms  INTEGER NOT NULL
);
