-- +goose Up
-- Payout runs. A draft lists each partner's approved balance per currency
-- (payout_lines) and pins the ledger entries it pays (payout_entries);
-- confirming it marks those entries with its id. An entry without a
-- payout id is unpaid: a refund booked after payment is carried, as a
-- negative amount, to the next run.
CREATE TABLE payouts (
    id           TEXT PRIMARY KEY,
    program_id   TEXT NOT NULL REFERENCES programs (id),
    status       TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    confirmed_by TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    confirmed_at INTEGER
);
CREATE INDEX payouts_program ON payouts (program_id, id);

CREATE TABLE payout_lines (
    payout_id        TEXT NOT NULL REFERENCES payouts (id) ON DELETE CASCADE,
    partner_id       TEXT NOT NULL REFERENCES partners (id),
    currency         TEXT NOT NULL,
    program_id       TEXT NOT NULL REFERENCES programs (id),
    amount_minor     INTEGER NOT NULL,
    entry_count      INTEGER NOT NULL,
    commission_count INTEGER NOT NULL,
    PRIMARY KEY (payout_id, partner_id, currency)
);

CREATE TABLE payout_entries (
    payout_id TEXT NOT NULL REFERENCES payouts (id) ON DELETE CASCADE,
    entry_id  TEXT NOT NULL REFERENCES ledger_entries (id) ON DELETE CASCADE,
    PRIMARY KEY (payout_id, entry_id)
);
CREATE INDEX payout_entries_entry ON payout_entries (entry_id);

-- No REFERENCES clause: SQLite cannot drop a column that has one, and only
-- the store writes ids of payouts it is confirming.
ALTER TABLE ledger_entries ADD COLUMN payout_id TEXT;
CREATE INDEX ledger_entries_unpaid ON ledger_entries (program_id, commission_id) WHERE payout_id IS NULL;
CREATE INDEX ledger_entries_payout ON ledger_entries (payout_id);

-- +goose Down
DROP INDEX ledger_entries_payout;
DROP INDEX ledger_entries_unpaid;
ALTER TABLE ledger_entries DROP COLUMN payout_id;
DROP TABLE payout_entries;
DROP TABLE payout_lines;
DROP TABLE payouts;
