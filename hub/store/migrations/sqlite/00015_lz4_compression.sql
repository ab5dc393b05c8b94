-- +goose Up
-- PostgreSQL's migration 15 compresses large values with lz4. SQLite does
-- not compress values; the version is kept in step with PostgreSQL's.
SELECT 1;

-- +goose Down
SELECT 1;
