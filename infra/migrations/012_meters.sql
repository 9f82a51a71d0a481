-- vinr schema: billing meters, meter events, corrections and usage alerts. Idempotent.

-- A meter turns events named `event_name` into one usage figure per customer and time range.
CREATE TABLE IF NOT EXISTS meters (
    pk              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- key on the hot path
    id              text NOT NULL UNIQUE,
    account_id      text NOT NULL REFERENCES accounts(id),
    livemode        boolean NOT NULL,
    display_name    text NOT NULL,
    event_name      text NOT NULL,
    formula         text NOT NULL CHECK (formula IN ('sum', 'count', 'last', 'max')),
    customer_key    text NOT NULL DEFAULT 'customer',  -- customerMapping.eventPayloadKey
    value_key       text NOT NULL DEFAULT 'value',     -- valueSettings.eventPayloadKey
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    created         bigint NOT NULL,
    updated         bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS meters_scope ON meters (account_id, livemode, created DESC, id DESC);
-- One active meter per event name, account and mode: an event lands in exactly one meter.
CREATE UNIQUE INDEX IF NOT EXISTS meters_active_event
    ON meters (account_id, livemode, event_name) WHERE status = 'active';

-- The ledger of meter events: one row per identifier and meter, the unit of dedupe for
-- meter events. A row whose value is NULL is a cancel that arrived before its event (a
-- tombstone): the event, when it comes, is recorded but never counted.
CREATE TABLE IF NOT EXISTS meter_events (
    meter_pk        bigint NOT NULL,
    identifier      text NOT NULL,
    customer_pk     bigint,
    ts              bigint,
    value           numeric,
    accepted_at     bigint,
    kafka_partition integer,
    kafka_offset    bigint,
    kafka_index     integer,
    cancelled_at    bigint,                 -- set by a cancel adjustment
    rejected        text,                   -- why the aggregator did not count it (e.g. period_invoiced)
    PRIMARY KEY (meter_pk, identifier)
);
-- A customer's events in time order: partial buckets at range edges, and recomputing a
-- bucket after a cancel.
CREATE INDEX IF NOT EXISTS meter_events_customer_ts ON meter_events (meter_pk, customer_pk, ts);

-- Minute buckets of counted (not cancelled) events per meter and customer: every statistic
-- every formula needs, so a summary over any range reads buckets, never raw events (except
-- the partial minutes at a range's edges). `last_*` is the latest event by timestamp, then
-- arrival order (kafka position).
CREATE TABLE IF NOT EXISTS meter_buckets (
    meter_pk        bigint NOT NULL,
    customer_pk     bigint NOT NULL,
    minute          bigint NOT NULL,        -- the bucket's start: a multiple of 60
    total           numeric NOT NULL DEFAULT 0,
    events          bigint NOT NULL DEFAULT 0,
    max             numeric,
    last_ts         bigint,
    last_value      numeric,
    last_seq        numeric,                -- arrival position of the last event (partition, offset, index)
    updated         bigint NOT NULL,
    PRIMARY KEY (meter_pk, customer_pk, minute)
);
ALTER TABLE meter_buckets SET (fillfactor = 70);

-- Up to where a customer's usage of a meter is invoiced. `closing_until`: ingest refuses
-- events before it (set when an invoice billing the meter is marked closing);
-- `closed_until`: the aggregator refuses to count events before it (set when that invoice
-- is finalized). A cancel needs the event after both.
CREATE TABLE IF NOT EXISTS meter_closes (
    meter_pk        bigint NOT NULL,
    customer_pk     bigint NOT NULL,
    closing_until   bigint NOT NULL DEFAULT 0,
    closed_until    bigint NOT NULL DEFAULT 0,
    updated         bigint NOT NULL,
    PRIMARY KEY (meter_pk, customer_pk)
);

-- Bumped with every change ingest caches about meters (a meter's status, a closing boundary):
-- every API process polls it and drops its meter caches when it moves.
CREATE TABLE IF NOT EXISTS meter_epoch (
    id              boolean PRIMARY KEY DEFAULT true CHECK (id),
    epoch           bigint NOT NULL
);
INSERT INTO meter_epoch (id, epoch) VALUES (true, 0) ON CONFLICT DO NOTHING;

-- A price may bill a meter's usage (recurring.meter) instead of usage records.
ALTER TABLE prices ADD COLUMN IF NOT EXISTS meter_pk bigint REFERENCES meters(pk);

-- Meter usage is decimal (values with up to 12 places): a line's quantity may be too.
ALTER TABLE invoice_lines ALTER COLUMN quantity TYPE numeric;

-- Usage threshold alerts on a meter, optionally for one customer.
CREATE TABLE IF NOT EXISTS billing_alerts (
    pk              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              text NOT NULL UNIQUE,
    account_id      text NOT NULL REFERENCES accounts(id),
    livemode        boolean NOT NULL,
    title           text NOT NULL,
    meter_pk        bigint NOT NULL REFERENCES meters(pk),
    customer_pk     bigint,                 -- filter.customer; NULL: every customer
    gte             numeric NOT NULL,
    recurrence      text NOT NULL DEFAULT 'one_time' CHECK (recurrence IN ('one_time')),
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'archived')),
    created         bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS billing_alerts_scope ON billing_alerts (account_id, livemode, created DESC, id DESC);
CREATE INDEX IF NOT EXISTS billing_alerts_meter ON billing_alerts (meter_pk) WHERE status = 'active';

-- An alert fires once per customer (one_time): this row is the proof it did.
CREATE TABLE IF NOT EXISTS billing_alert_triggers (
    alert_pk        bigint NOT NULL REFERENCES billing_alerts(pk),
    customer_pk     bigint NOT NULL,
    value           numeric NOT NULL,
    event_id        text NOT NULL,
    created         bigint NOT NULL,
    PRIMARY KEY (alert_pk, customer_pk)
);
