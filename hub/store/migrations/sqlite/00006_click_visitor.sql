-- +goose Up
-- The browser a click came from (a first-party cookie), so several clicks
-- of one visitor can be told apart for first- or last-touch attribution.
ALTER TABLE clicks ADD COLUMN visitor_id TEXT NOT NULL DEFAULT '';
ALTER TABLE clicks ADD COLUMN destination TEXT NOT NULL DEFAULT '';
CREATE INDEX clicks_visitor ON clicks (program_id, visitor_id, created_at);

-- +goose Down
DROP INDEX clicks_visitor;
ALTER TABLE clicks DROP COLUMN destination;
ALTER TABLE clicks DROP COLUMN visitor_id;
