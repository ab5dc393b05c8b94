-- +goose Up
-- When retention erased an inbound event's raw body and headers; NULL while
-- they are kept. The partial index finds the events still holding a body.
ALTER TABLE inbound_events ADD COLUMN body_purged_at INTEGER;
CREATE INDEX inbound_events_retention ON inbound_events (received_at) WHERE body_purged_at IS NULL;

-- What processing an inbound event produced: the conversions and refunds
-- it created or changed (kind is "conversion" or "refund").
CREATE TABLE inbound_results (
    inbound_event_id TEXT NOT NULL REFERENCES inbound_events (id) ON DELETE CASCADE,
    kind             TEXT NOT NULL,
    result_id        TEXT NOT NULL,
    PRIMARY KEY (inbound_event_id, kind, result_id)
);
CREATE INDEX inbound_results_result ON inbound_results (result_id);

-- +goose Down
DROP INDEX inbound_results_result;
DROP TABLE inbound_results;
DROP INDEX inbound_events_retention;
ALTER TABLE inbound_events DROP COLUMN body_purged_at;
