-- +goose Up
-- Identifiers use the "C" collation so that ID order (cursor pagination)
-- is byte order whatever the database's locale. JSON values are TEXT, kept
-- byte for byte.

CREATE TABLE programs (
    id                     TEXT COLLATE "C" PRIMARY KEY,
    name                   TEXT NOT NULL,
    default_commission_bps BIGINT NOT NULL,
    hold_days              INTEGER NOT NULL,
    created_at             TIMESTAMPTZ NOT NULL,
    updated_at             TIMESTAMPTZ NOT NULL
);

INSERT INTO programs (id, name, default_commission_bps, hold_days, created_at, updated_at)
VALUES ('prg_default', 'Default program', 1000, 30,
        now(), now());

CREATE TABLE api_keys (
    id         TEXT COLLATE "C" PRIMARY KEY,
    program_id TEXT COLLATE "C" NOT NULL REFERENCES programs (id),
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    prefix     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX api_keys_program ON api_keys (program_id, id);

CREATE TABLE sources (
    id              TEXT COLLATE "C" PRIMARY KEY,
    program_id      TEXT COLLATE "C" NOT NULL REFERENCES programs (id),
    provider        TEXT NOT NULL,
    name            TEXT NOT NULL,
    secret          TEXT NOT NULL,
    previous_secret TEXT NOT NULL,
    options         TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX sources_program ON sources (program_id, id);

CREATE TABLE inbound_events (
    id           TEXT COLLATE "C" PRIMARY KEY,
    program_id   TEXT COLLATE "C" NOT NULL REFERENCES programs (id),
    source_id    TEXT COLLATE "C" NOT NULL REFERENCES sources (id),
    provider     TEXT NOT NULL,
    dedupe_key   TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    headers      TEXT NOT NULL,
    body         BYTEA NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT NOT NULL DEFAULT '',
    received_at  TIMESTAMPTZ NOT NULL,
    processed_at TIMESTAMPTZ,
    UNIQUE (source_id, dedupe_key)
);
CREATE INDEX inbound_events_program ON inbound_events (program_id, id);
CREATE INDEX inbound_events_due ON inbound_events (status, received_at);

CREATE TABLE partners (
    id         TEXT COLLATE "C" PRIMARY KEY,
    program_id TEXT COLLATE "C" NOT NULL REFERENCES programs (id),
    name       TEXT NOT NULL,
    email      TEXT NOT NULL,
    code       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX partners_code ON partners (program_id, lower(code));
CREATE INDEX partners_program ON partners (program_id, id);

CREATE TABLE clicks (
    id          TEXT COLLATE "C" PRIMARY KEY,
    program_id  TEXT COLLATE "C" NOT NULL REFERENCES programs (id),
    partner_id  TEXT COLLATE "C" NOT NULL REFERENCES partners (id),
    landing_url TEXT NOT NULL,
    referrer    TEXT NOT NULL,
    ip_hash     TEXT NOT NULL,
    ua_hash     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX clicks_program ON clicks (program_id, id);
CREATE INDEX clicks_partner ON clicks (partner_id, created_at);

CREATE TABLE conversions (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    program_id          TEXT COLLATE "C" NOT NULL REFERENCES programs (id),
    source_id           TEXT COLLATE "C" NOT NULL REFERENCES sources (id),
    provider            TEXT NOT NULL,
    kind                TEXT NOT NULL,
    livemode            BOOLEAN NOT NULL,
    customer_id         TEXT NOT NULL,
    customer_email_hash TEXT NOT NULL,
    base_minor          BIGINT NOT NULL,
    gross_minor         BIGINT NOT NULL,
    tax_minor           BIGINT NOT NULL,
    currency            TEXT NOT NULL,
    hints               TEXT NOT NULL,
    partner_id          TEXT COLLATE "C" REFERENCES partners (id),
    attribution_reason  TEXT NOT NULL,
    subscription_id     TEXT NOT NULL,
    refunded_minor      BIGINT NOT NULL DEFAULT 0,
    refunded_base_minor BIGINT NOT NULL DEFAULT 0,
    occurred_at         TIMESTAMPTZ NOT NULL,
    received_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX conversions_program ON conversions (program_id, id);
CREATE INDEX conversions_subscription ON conversions (program_id, provider, subscription_id, occurred_at);
CREATE INDEX conversions_customer ON conversions (program_id, provider, customer_id, occurred_at);
CREATE INDEX conversions_partner ON conversions (partner_id);

-- conversion_keys is the key alias table: every provider id naming one
-- payment points to its conversion.
CREATE TABLE conversion_keys (
    program_id    TEXT COLLATE "C" NOT NULL REFERENCES programs (id),
    provider      TEXT NOT NULL,
    key           TEXT NOT NULL,
    conversion_id TEXT COLLATE "C" NOT NULL REFERENCES conversions (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (program_id, provider, key)
);
CREATE INDEX conversion_keys_conversion ON conversion_keys (conversion_id, position);

CREATE TABLE conversion_lines (
    conversion_id TEXT COLLATE "C" NOT NULL REFERENCES conversions (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    program_id    TEXT COLLATE "C" NOT NULL REFERENCES programs (id),
    product_id    TEXT NOT NULL,
    price_id      TEXT NOT NULL,
    quantity      BIGINT NOT NULL,
    amount_minor  BIGINT NOT NULL,
    PRIMARY KEY (conversion_id, position)
);

CREATE TABLE refunds (
    id            TEXT COLLATE "C" PRIMARY KEY,
    program_id    TEXT COLLATE "C" NOT NULL REFERENCES programs (id),
    source_id     TEXT COLLATE "C" NOT NULL REFERENCES sources (id),
    conversion_id TEXT COLLATE "C" REFERENCES conversions (id),
    provider      TEXT NOT NULL,
    external_id   TEXT NOT NULL,
    original_keys TEXT NOT NULL,
    kind          TEXT NOT NULL,
    cumulative    BOOLEAN NOT NULL,
    amount_minor  BIGINT NOT NULL,
    base_minor    BIGINT,
    currency      TEXT NOT NULL,
    status        TEXT NOT NULL,
    occurred_at   TIMESTAMPTZ NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (source_id, external_id, kind)
);
CREATE INDEX refunds_program ON refunds (program_id, id);
CREATE INDEX refunds_conversion ON refunds (conversion_id);
CREATE INDEX refunds_parked ON refunds (program_id, provider) WHERE conversion_id IS NULL;

CREATE TABLE commissions (
    id            TEXT COLLATE "C" PRIMARY KEY,
    program_id    TEXT COLLATE "C" NOT NULL REFERENCES programs (id),
    conversion_id TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES conversions (id),
    partner_id    TEXT COLLATE "C" NOT NULL REFERENCES partners (id),
    status        TEXT NOT NULL,
    rate_bps      BIGINT NOT NULL,
    currency      TEXT NOT NULL,
    test          BOOLEAN NOT NULL,
    hold_until    TIMESTAMPTZ NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX commissions_program ON commissions (program_id, id);
CREATE INDEX commissions_partner ON commissions (partner_id);
CREATE INDEX commissions_hold ON commissions (status, hold_until);

CREATE TABLE ledger_entries (
    id            TEXT COLLATE "C" PRIMARY KEY,
    program_id    TEXT COLLATE "C" NOT NULL REFERENCES programs (id),
    commission_id TEXT COLLATE "C" NOT NULL REFERENCES commissions (id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    type          TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL,
    currency      TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (commission_id, key)
);

CREATE TABLE endpoints (
    id          TEXT COLLATE "C" PRIMARY KEY,
    program_id  TEXT COLLATE "C" NOT NULL REFERENCES programs (id),
    url         TEXT NOT NULL,
    description TEXT NOT NULL,
    event_types TEXT NOT NULL,
    partner_id  TEXT COLLATE "C" REFERENCES partners (id),
    secret      TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX endpoints_program ON endpoints (program_id, id);

CREATE TABLE events (
    id         TEXT COLLATE "C" PRIMARY KEY,
    program_id TEXT COLLATE "C" NOT NULL REFERENCES programs (id),
    type       TEXT NOT NULL,
    partner_id TEXT COLLATE "C" REFERENCES partners (id),
    data       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX events_program ON events (program_id, id);
CREATE INDEX events_partner ON events (partner_id);

CREATE TABLE deliveries (
    id              TEXT COLLATE "C" PRIMARY KEY,
    program_id      TEXT COLLATE "C" NOT NULL REFERENCES programs (id),
    event_id        TEXT COLLATE "C" NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    endpoint_id     TEXT COLLATE "C" NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    event_type      TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX deliveries_program ON deliveries (program_id, id);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, id);

CREATE TABLE attempts (
    id            TEXT COLLATE "C" PRIMARY KEY,
    program_id    TEXT COLLATE "C" NOT NULL REFERENCES programs (id),
    delivery_id   TEXT COLLATE "C" NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number        INTEGER NOT NULL,
    status_code   INTEGER NOT NULL,
    latency_ms    BIGINT NOT NULL,
    error         TEXT NOT NULL,
    response_body TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (delivery_id, number)
);

CREATE TABLE audit_log (
    id          TEXT COLLATE "C" PRIMARY KEY,
    program_id  TEXT COLLATE "C" NOT NULL REFERENCES programs (id),
    key_id      TEXT NOT NULL,
    action      TEXT NOT NULL,
    resource    TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    before      TEXT,
    after       TEXT,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX audit_log_program ON audit_log (program_id, id);

-- +goose Down
DROP TABLE audit_log;
DROP TABLE attempts;
DROP TABLE deliveries;
DROP TABLE events;
DROP TABLE endpoints;
DROP TABLE ledger_entries;
DROP TABLE commissions;
DROP TABLE refunds;
DROP TABLE conversion_lines;
DROP TABLE conversion_keys;
DROP TABLE conversions;
DROP TABLE clicks;
DROP TABLE partners;
DROP TABLE inbound_events;
DROP TABLE sources;
DROP TABLE api_keys;
DROP TABLE programs;
