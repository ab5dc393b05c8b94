-- +goose Up
-- Endpoint delivery settings (custom headers, rate limit, timeout,
-- concurrency, operations flag), secret rotation, and why and since when
-- an endpoint fails or was disabled.
ALTER TABLE endpoints ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE endpoints ADD COLUMN previous_secret TEXT NOT NULL DEFAULT '';
ALTER TABLE endpoints ADD COLUMN previous_secret_until INTEGER;
ALTER TABLE endpoints ADD COLUMN disabled_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE endpoints ADD COLUMN failing_since INTEGER;

-- +goose Down
ALTER TABLE endpoints DROP COLUMN failing_since;
ALTER TABLE endpoints DROP COLUMN disabled_reason;
ALTER TABLE endpoints DROP COLUMN previous_secret_until;
ALTER TABLE endpoints DROP COLUMN previous_secret;
ALTER TABLE endpoints DROP COLUMN settings;
