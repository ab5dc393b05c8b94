-- +goose Up
-- Partner-role API keys name their partner; revoked keys stay listed.
ALTER TABLE api_keys ADD COLUMN partner_id TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN revoked_at INTEGER;

-- What a merchant needs to see that a connection works: the last
-- verified webhook, and the last refused one with its reason.
ALTER TABLE sources ADD COLUMN last_verified_at INTEGER;
ALTER TABLE sources ADD COLUMN last_failure_at INTEGER;
ALTER TABLE sources ADD COLUMN last_failure TEXT NOT NULL DEFAULT '';

-- Answers to POSTs sent with an Idempotency-Key, per program, for 24 h.
-- status 0 marks a request still running.
CREATE TABLE idempotency_keys (
    program_id   TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    status       INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    body         BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (program_id, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
ALTER TABLE sources DROP COLUMN last_failure;
ALTER TABLE sources DROP COLUMN last_failure_at;
ALTER TABLE sources DROP COLUMN last_verified_at;
ALTER TABLE api_keys DROP COLUMN revoked_at;
ALTER TABLE api_keys DROP COLUMN partner_id;
