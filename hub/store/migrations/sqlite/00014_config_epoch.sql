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
    n  INTEGER NOT NULL
);
INSERT INTO config_epoch (id, n) VALUES (1, 1);

-- +goose StatementBegin
CREATE TRIGGER programs_config_epoch_insert AFTER INSERT ON programs
BEGIN
    UPDATE config_epoch SET n = n + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER programs_config_epoch_delete AFTER DELETE ON programs
BEGIN
    UPDATE config_epoch SET n = n + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER programs_config_epoch_update AFTER UPDATE ON programs
BEGIN
    UPDATE config_epoch SET n = n + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER partners_config_epoch_insert AFTER INSERT ON partners
BEGIN
    UPDATE config_epoch SET n = n + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER partners_config_epoch_delete AFTER DELETE ON partners
BEGIN
    UPDATE config_epoch SET n = n + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER partners_config_epoch_update AFTER UPDATE ON partners
BEGIN
    UPDATE config_epoch SET n = n + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER rules_config_epoch_insert AFTER INSERT ON rules
BEGIN
    UPDATE config_epoch SET n = n + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER rules_config_epoch_delete AFTER DELETE ON rules
BEGIN
    UPDATE config_epoch SET n = n + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER rules_config_epoch_update AFTER UPDATE ON rules
BEGIN
    UPDATE config_epoch SET n = n + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER sources_config_epoch_insert AFTER INSERT ON sources
BEGIN
    UPDATE config_epoch SET n = n + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER sources_config_epoch_delete AFTER DELETE ON sources
BEGIN
    UPDATE config_epoch SET n = n + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER sources_config_epoch_update AFTER UPDATE OF id, program_id, provider, name, secret, previous_secret, options, credentials ON sources
BEGIN
    UPDATE config_epoch SET n = n + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER endpoints_config_epoch_insert AFTER INSERT ON endpoints
BEGIN
    UPDATE config_epoch SET n = n + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER endpoints_config_epoch_delete AFTER DELETE ON endpoints
BEGIN
    UPDATE config_epoch SET n = n + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER endpoints_config_epoch_update AFTER UPDATE OF id, program_id, event_types, partner_id, enabled, settings ON endpoints
BEGIN
    UPDATE config_epoch SET n = n + 1 WHERE id = 1;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER endpoints_config_epoch_update;
DROP TRIGGER endpoints_config_epoch_delete;
DROP TRIGGER endpoints_config_epoch_insert;
DROP TRIGGER sources_config_epoch_update;
DROP TRIGGER sources_config_epoch_delete;
DROP TRIGGER sources_config_epoch_insert;
DROP TRIGGER rules_config_epoch_update;
DROP TRIGGER rules_config_epoch_delete;
DROP TRIGGER rules_config_epoch_insert;
DROP TRIGGER partners_config_epoch_update;
DROP TRIGGER partners_config_epoch_delete;
DROP TRIGGER partners_config_epoch_insert;
DROP TRIGGER programs_config_epoch_update;
DROP TRIGGER programs_config_epoch_delete;
DROP TRIGGER programs_config_epoch_insert;
DROP TABLE config_epoch;
