-- Token usage per debate and provider, as the providers counted it in their answers (their
-- `usage`), added up over the debate's calls; offline agents spend none and have no rows.
-- `GET /api/auth/me/usage` reads the caller's own debates' through debates_by_creator.
CREATE TABLE debate_usage (
    debate_id      TEXT NOT NULL REFERENCES debates (id) ON DELETE CASCADE,
    provider       TEXT NOT NULL,
    input_tokens   INTEGER NOT NULL DEFAULT 0,
    output_tokens  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (debate_id, provider)
);
CREATE INDEX debates_by_creator ON debates (created_by, created_at_ms);
