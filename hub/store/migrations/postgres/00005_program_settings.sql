-- +goose Up
-- Attribution and payout settings of a program, as one JSON document
-- (see hub.ProgramSettings); empty means the defaults.
ALTER TABLE programs ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE programs DROP COLUMN settings;
