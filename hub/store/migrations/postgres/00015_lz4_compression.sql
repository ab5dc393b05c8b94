-- +goose Up
-- The large values (inbound bodies and headers, outbound event payloads,
-- receivers' responses) are compressed with lz4 where the server has it:
-- under load, pglz compression was PostgreSQL's largest single function
-- in a CPU profile (7 % of its time), and lz4 costs a fraction of that.
-- Values stored before keep the compression they have; a server built
-- without lz4 keeps pglz.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE inbound_events ALTER COLUMN body SET COMPRESSION lz4, ALTER COLUMN headers SET COMPRESSION lz4;
        ALTER TABLE events ALTER COLUMN data SET COMPRESSION lz4;
        ALTER TABLE attempts ALTER COLUMN response_body SET COMPRESSION lz4;
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
ALTER TABLE attempts ALTER COLUMN response_body SET COMPRESSION DEFAULT;
ALTER TABLE events ALTER COLUMN data SET COMPRESSION DEFAULT;
ALTER TABLE inbound_events ALTER COLUMN body SET COMPRESSION DEFAULT, ALTER COLUMN headers SET COMPRESSION DEFAULT;
