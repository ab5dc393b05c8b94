-- +goose Up
-- config_epoch counts changes to what applying an inbound event reads of
-- a program's configuration: programs, sources, partners, rules and
-- endpoints. The triggers bump it in the transaction of the change, so a
-- process that finds the count unchanged may keep using what it read of
-- them before (hub/store/config_cache.go). Columns that change with
-- traffic (a source's last verification, an endpoint's failing run) are
-- left out: they are not read there.
CREATE TABLE config_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  BIGINT NOT NULL
);
INSERT INTO config_epoch (id, n) VALUES (1, 1);

-- The function keeps the search_path it was created with, so that a
-- change made from a session with another search_path (a hand-written
-- update naming the schema) still finds config_epoch.
-- +goose StatementBegin
CREATE FUNCTION bump_config_epoch() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE config_epoch SET n = n + 1 WHERE id = 1;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER programs_config_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON programs
    FOR EACH STATEMENT EXECUTE FUNCTION bump_config_epoch();
CREATE TRIGGER partners_config_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON partners
    FOR EACH STATEMENT EXECUTE FUNCTION bump_config_epoch();
CREATE TRIGGER rules_config_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON rules
    FOR EACH STATEMENT EXECUTE FUNCTION bump_config_epoch();
CREATE TRIGGER sources_config_epoch
    AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF id, program_id, provider, name, secret, previous_secret, options, credentials
    ON sources FOR EACH STATEMENT EXECUTE FUNCTION bump_config_epoch();
CREATE TRIGGER endpoints_config_epoch
    AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF id, program_id, event_types, partner_id, enabled, settings
    ON endpoints FOR EACH STATEMENT EXECUTE FUNCTION bump_config_epoch();

-- +goose Down
DROP TRIGGER endpoints_config_epoch ON endpoints;
DROP TRIGGER sources_config_epoch ON sources;
DROP TRIGGER rules_config_epoch ON rules;
DROP TRIGGER partners_config_epoch ON partners;
DROP TRIGGER programs_config_epoch ON programs;
DROP FUNCTION bump_config_epoch();
DROP TABLE config_epoch;
