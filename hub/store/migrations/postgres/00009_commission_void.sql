-- +goose Up
-- A conversion re-attributed by an operator keeps its old commission as
-- void (its ledger intact) and gets a new one: one active commission per
-- conversion instead of one in all.
ALTER TABLE commissions DROP CONSTRAINT commissions_conversion_id_key;
CREATE UNIQUE INDEX commissions_active ON commissions (conversion_id) WHERE status <> 'void';
CREATE INDEX commissions_conversion ON commissions (conversion_id);

-- +goose Down
DROP INDEX commissions_conversion;
DROP INDEX commissions_active;
ALTER TABLE commissions ADD CONSTRAINT commissions_conversion_id_key UNIQUE (conversion_id);
