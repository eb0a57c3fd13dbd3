-- Debates and their event log. Every transition and message is an event row, written
-- before it is announced, so a WebSocket client can resume from any seq.
CREATE TABLE debates (
    id                TEXT PRIMARY KEY,
    topic             TEXT NOT NULL,
    status            TEXT NOT NULL,
    rounds            INTEGER NOT NULL,
    agents            TEXT NOT NULL,
    consensus_rule    TEXT NOT NULL,
    seed              INTEGER NOT NULL,
    created_at_ms     INTEGER NOT NULL,
    started_at_ms     INTEGER,
    finished_at_ms    INTEGER,
    updated_at_ms     INTEGER NOT NULL,
    outcome           TEXT,
    consensus_reached INTEGER,
    final_answer      TEXT,
    error             TEXT,
    last_seq          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX debates_by_status ON debates (status, created_at_ms);
CREATE INDEX debates_by_created ON debates (created_at_ms);

CREATE TABLE debate_events (
    debate_id     TEXT NOT NULL REFERENCES debates (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    round         INTEGER,
    agent         TEXT,
    data          TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (debate_id, seq)
);
