-- +goose Up
-- REST credentials (encrypted like the webhook secrets), the position of
-- the reconciliation poll, and what it last found wrong with the source.
ALTER TABLE sources ADD COLUMN credentials TEXT NOT NULL DEFAULT '';
ALTER TABLE sources ADD COLUMN cursor TEXT NOT NULL DEFAULT '';
ALTER TABLE sources ADD COLUMN health TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE sources DROP COLUMN health;
ALTER TABLE sources DROP COLUMN cursor;
ALTER TABLE sources DROP COLUMN credentials;
