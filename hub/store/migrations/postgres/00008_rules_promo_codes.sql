-- +goose Up
-- Commission rules, promo codes, partner tags, and the terms a commission
-- was computed with (which rule, rate or flat amount, cap, and why).
ALTER TABLE partners ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE commissions ADD COLUMN terms TEXT NOT NULL DEFAULT '{}';

CREATE TABLE promo_codes (
    id         TEXT COLLATE "C" PRIMARY KEY,
    program_id TEXT COLLATE "C" NOT NULL REFERENCES programs (id),
    partner_id TEXT COLLATE "C" NOT NULL REFERENCES partners (id),
    code       TEXT NOT NULL,
    starts_at  TIMESTAMPTZ,
    ends_at    TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX promo_codes_code ON promo_codes (program_id, lower(code));
CREATE INDEX promo_codes_program ON promo_codes (program_id, id);

CREATE TABLE rules (
    id         TEXT COLLATE "C" PRIMARY KEY,
    program_id TEXT COLLATE "C" NOT NULL REFERENCES programs (id),
    body       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX rules_program ON rules (program_id, id);

-- +goose Down
DROP TABLE rules;
DROP TABLE promo_codes;
ALTER TABLE commissions DROP COLUMN terms;
ALTER TABLE partners DROP COLUMN tags;
