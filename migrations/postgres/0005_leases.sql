-- Debate leases: the replica running (or queueing) a debate holds it under a lease it renews;
-- when the lease expires another replica adopts the debate and resumes it from its events.
-- `lease_epoch` is the fencing token: every adoption increments it, and a replica writes a
-- debate's events only while owner and epoch are still the ones it claimed, so a replica
-- that was paused past its lease records nothing more. A cancel sent to a replica that does
-- not run the debate is recorded here for the owner to act on.
ALTER TABLE debates ADD COLUMN owner TEXT;
ALTER TABLE debates ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE debates ADD COLUMN lease_expires_at_ms BIGINT;
ALTER TABLE debates ADD COLUMN cancel_requested_at_ms BIGINT;
ALTER TABLE debates ADD COLUMN cancel_requested_by TEXT;
CREATE INDEX debates_by_owner ON debates (owner);
