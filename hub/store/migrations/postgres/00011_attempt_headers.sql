-- +goose Up
-- A subset of each attempt's response headers (JSON object), for
-- operators debugging a receiver.
ALTER TABLE attempts ADD COLUMN response_headers TEXT NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE attempts DROP COLUMN response_headers;
