-- Who may call the API: API keys (only their salted argon2 hash is kept; `id` is the public
-- part shown in logs and listings), and who created each debate (operators cancel their own).
CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL,
    secret_hash    TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    expires_at_ms  BIGINT,
    revoked_at_ms  BIGINT
);
CREATE INDEX api_keys_by_created ON api_keys (created_at_ms);

ALTER TABLE debates ADD COLUMN created_by TEXT;
