-- Debates and their event log. Every transition and message is an event row, written
-- before it is announced, so a WebSocket client can resume from any seq.
CREATE TABLE debates (
    id                TEXT PRIMARY KEY,
    topic             TEXT NOT NULL,
    status            TEXT NOT NULL,
    rounds            BIGINT NOT NULL,
    agents            TEXT NOT NULL,
    consensus_rule    TEXT NOT NULL,
    seed              BIGINT NOT NULL,
    created_at_ms     BIGINT NOT NULL,
    started_at_ms     BIGINT,
    finished_at_ms    BIGINT,
    updated_at_ms     BIGINT NOT NULL,
    outcome           TEXT,
    consensus_reached BIGINT,
    final_answer      TEXT,
    error             TEXT,
    last_seq          BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX debates_by_status ON debates (status, created_at_ms);
CREATE INDEX debates_by_created ON debates (created_at_ms);

CREATE TABLE debate_events (
    debate_id     TEXT NOT NULL REFERENCES debates (id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    round         BIGINT,
    agent         TEXT,
    data          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (debate_id, seq)
);
