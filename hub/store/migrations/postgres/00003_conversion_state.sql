-- +goose Up
-- The modification time of the newest order state applied to a conversion,
-- for providers whose webhooks carry state (WooCommerce): an older state
-- delivered late is recorded and ignored.
ALTER TABLE conversions ADD COLUMN state_at TIMESTAMPTZ;

-- +goose Down
ALTER TABLE conversions DROP COLUMN state_at;
