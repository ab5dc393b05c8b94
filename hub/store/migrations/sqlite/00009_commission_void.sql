-- +goose NO TRANSACTION
-- +goose Up
-- A conversion re-attributed by an operator keeps its old commission as
-- void (its ledger intact) and gets a new one: one active commission per
-- conversion instead of one in all. SQLite cannot drop a column
-- constraint, so the table is rebuilt, with foreign keys off (SQLite's
-- documented procedure) and checked before committing.
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE commissions_next (
    id            TEXT PRIMARY KEY,
    program_id    TEXT NOT NULL REFERENCES programs (id),
    conversion_id TEXT NOT NULL REFERENCES conversions (id),
    partner_id    TEXT NOT NULL REFERENCES partners (id),
    status        TEXT NOT NULL,
    rate_bps      INTEGER NOT NULL,
    currency      TEXT NOT NULL,
    test          INTEGER NOT NULL,
    hold_until    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    terms         TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO commissions_next (id, program_id, conversion_id, partner_id, status, rate_bps, currency, test, hold_until, created_at, terms)
    SELECT id, program_id, conversion_id, partner_id, status, rate_bps, currency, test, hold_until, created_at, terms FROM commissions;
DROP TABLE commissions;
ALTER TABLE commissions_next RENAME TO commissions;
CREATE INDEX commissions_program ON commissions (program_id, id);
CREATE INDEX commissions_partner ON commissions (partner_id);
CREATE INDEX commissions_hold ON commissions (status, hold_until);
CREATE INDEX commissions_conversion ON commissions (conversion_id);
CREATE UNIQUE INDEX commissions_active ON commissions (conversion_id) WHERE status <> 'void';
COMMIT;
PRAGMA foreign_keys = ON;

-- +goose Down
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE commissions_prev (
    id            TEXT PRIMARY KEY,
    program_id    TEXT NOT NULL REFERENCES programs (id),
    conversion_id TEXT NOT NULL UNIQUE REFERENCES conversions (id),
    partner_id    TEXT NOT NULL REFERENCES partners (id),
    status        TEXT NOT NULL,
    rate_bps      INTEGER NOT NULL,
    currency      TEXT NOT NULL,
    test          INTEGER NOT NULL,
    hold_until    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    terms         TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO commissions_prev SELECT id, program_id, conversion_id, partner_id, status, rate_bps, currency, test, hold_until, created_at, terms
    FROM commissions WHERE status <> 'void';
DROP TABLE commissions;
ALTER TABLE commissions_prev RENAME TO commissions;
CREATE INDEX commissions_program ON commissions (program_id, id);
CREATE INDEX commissions_partner ON commissions (partner_id);
CREATE INDEX commissions_hold ON commissions (status, hold_until);
COMMIT;
PRAGMA foreign_keys = ON;
