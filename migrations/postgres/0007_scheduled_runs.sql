-- Scheduled runs (backups, drills, chaos experiments), one row per job and scheduled tick,
-- claimed before the run starts. Only the scheduler leader runs schedules, but the primary key
-- makes sure that even two processes that both believe they lead (a moment of split brain, or
-- a new leader whose clock lags the old one's) run the same tick once: the second claim of a
-- (job, tick) inserts nothing and that process skips the tick.
CREATE TABLE scheduled_runs (
    job               TEXT NOT NULL,
    scheduled_for_ms  BIGINT NOT NULL,
    holder            TEXT NOT NULL,
    started_at_ms     BIGINT NOT NULL,
    finished_at_ms    BIGINT,
    PRIMARY KEY (job, scheduled_for_ms)
);
