-- Webhooks (the Operations Runbook's Webhook Delivery Manager): subscriptions, and deliveries
-- as an outbox written in the transaction that records their event. A subscription's secret
-- is stored encrypted (AES-256-GCM under ARAGORA_WEBHOOK_ENCRYPTION_KEY), never in clear.
-- event_types is a comma-separated list of event type names. A delivery's body is the exact
-- text sent (and signed); the worker of any replica takes a due row by setting its lease.
CREATE TABLE webhook_subscriptions (
    id             TEXT PRIMARY KEY,
    owner          TEXT NOT NULL,
    url            TEXT NOT NULL,
    event_types    TEXT NOT NULL,
    secret_sealed  TEXT,
    enabled        BIGINT NOT NULL DEFAULT 1,
    created_at_ms  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id                  TEXT PRIMARY KEY,
    subscription_id     TEXT NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    event_type          TEXT NOT NULL,
    body                TEXT NOT NULL,
    state               TEXT NOT NULL,
    attempts            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms  BIGINT NOT NULL,
    lease_holder        TEXT,
    lease_until_ms      BIGINT,
    last_status         BIGINT,
    last_error          TEXT,
    created_at_ms       BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL,
    delivered_at_ms     BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at_ms);
CREATE INDEX webhook_deliveries_by_subscription ON webhook_deliveries (subscription_id, updated_at_ms);
