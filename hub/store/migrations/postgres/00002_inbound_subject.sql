-- +goose Up
-- The payment and customer an inbound event is about, recorded for every
-- event (ignored ones too), so a customer's data can be found and erased.
ALTER TABLE inbound_events ADD COLUMN subject TEXT NOT NULL DEFAULT '';
ALTER TABLE inbound_events ADD COLUMN customer_ref TEXT NOT NULL DEFAULT '';
CREATE INDEX inbound_events_subject ON inbound_events (program_id, provider, subject);
CREATE INDEX inbound_events_customer ON inbound_events (program_id, provider, customer_ref);

-- +goose Down
DROP INDEX inbound_events_customer;
DROP INDEX inbound_events_subject;
ALTER TABLE inbound_events DROP COLUMN customer_ref;
ALTER TABLE inbound_events DROP COLUMN subject;
