-- vinr schema v1. Every public object belongs to one account and one mode (livemode).
-- Amounts and quantities are numeric(38,0): a hostile batch must not overflow bigint.

CREATE TABLE IF NOT EXISTS accounts (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created     bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS api_keys (
    key_hash    bytea PRIMARY KEY,          -- sha256 of the secret key; the key itself is never stored
    account_id  text NOT NULL REFERENCES accounts(id),
    livemode    boolean NOT NULL,
    hint        text NOT NULL,              -- "sk_test_…abcd", for listing keys
    created     bigint NOT NULL,
    revoked     boolean NOT NULL DEFAULT false
);

CREATE TABLE IF NOT EXISTS products (
    id          text PRIMARY KEY,
    account_id  text NOT NULL REFERENCES accounts(id),
    livemode    boolean NOT NULL,
    name        text NOT NULL,
    description text,
    active      boolean NOT NULL DEFAULT true,
    metadata    jsonb NOT NULL DEFAULT '{}',
    created     bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS products_scope ON products (account_id, livemode, created DESC, id DESC);

CREATE TABLE IF NOT EXISTS prices (
    id              text PRIMARY KEY,
    account_id      text NOT NULL REFERENCES accounts(id),
    livemode        boolean NOT NULL,
    product_id      text NOT NULL REFERENCES products(id),
    currency        text NOT NULL,
    terms           jsonb NOT NULL,         -- invoicer.pricing.terms_to_json: the one pricing source
    interval        text NOT NULL CHECK (interval IN ('day', 'week', 'month', 'year')),
    interval_count  integer NOT NULL CHECK (interval_count >= 1),
    usage_type      text NOT NULL CHECK (usage_type IN ('licensed', 'metered')),
    aggregate_usage text CHECK (aggregate_usage IN ('sum', 'last_during_period', 'last_ever', 'max')),
    active          boolean NOT NULL DEFAULT true,
    created         bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS prices_scope ON prices (account_id, livemode, created DESC, id DESC);

CREATE TABLE IF NOT EXISTS customers (
    pk              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              text NOT NULL,
    account_id      text NOT NULL REFERENCES accounts(id),
    livemode        boolean NOT NULL,
    name            text,
    email           text,
    default_pm      text,
    metadata        jsonb NOT NULL DEFAULT '{}',
    created         bigint NOT NULL,
    UNIQUE (account_id, livemode, id)
);

CREATE TABLE IF NOT EXISTS payment_methods (
    id              text PRIMARY KEY,
    account_id      text NOT NULL REFERENCES accounts(id),
    livemode        boolean NOT NULL,
    customer_pk     bigint NOT NULL REFERENCES customers(pk),
    kind            text NOT NULL,          -- the sandbox test method, e.g. pm_card_visa
    brand           text NOT NULL,
    last4           text NOT NULL,
    created         bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS test_clocks (
    id              text PRIMARY KEY,
    account_id      text NOT NULL REFERENCES accounts(id),
    livemode        boolean NOT NULL CHECK (NOT livemode),
    name            text,
    frozen_time     bigint NOT NULL,
    status          text NOT NULL DEFAULT 'ready',
    created         bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS subscriptions (
    id                   text PRIMARY KEY,
    account_id           text NOT NULL REFERENCES accounts(id),
    livemode             boolean NOT NULL,
    customer_pk          bigint NOT NULL REFERENCES customers(pk),
    status               text NOT NULL,
    test_clock_id        text REFERENCES test_clocks(id),
    currency             text NOT NULL,
    interval             text NOT NULL,
    interval_count       integer NOT NULL,
    anchor               bigint NOT NULL,    -- billing cycle anchor: periods are anchor + k intervals
    period_index         integer NOT NULL DEFAULT 0,
    current_period_start bigint NOT NULL,
    current_period_end   bigint NOT NULL,
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    canceled_at          bigint,
    ended_at             bigint,
    final_invoice_pending boolean NOT NULL DEFAULT false,  -- canceled now: bill usage so far
    metadata             jsonb NOT NULL DEFAULT '{}',
    version              bigint NOT NULL DEFAULT 1,  -- bumped on every change: orders cache writes
    created              bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_scope ON subscriptions (account_id, livemode, created DESC, id DESC);
CREATE INDEX IF NOT EXISTS subscriptions_due ON subscriptions (current_period_end)
    WHERE status IN ('active', 'past_due', 'trialing') OR final_invoice_pending;

CREATE TABLE IF NOT EXISTS subscription_items (
    pk              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- key on the hot path
    id              text NOT NULL,
    account_id      text NOT NULL REFERENCES accounts(id),
    livemode        boolean NOT NULL,
    subscription_id text NOT NULL REFERENCES subscriptions(id),
    price_id        text NOT NULL REFERENCES prices(id),
    quantity        bigint,
    deleted         boolean NOT NULL DEFAULT false,
    created         bigint NOT NULL,
    UNIQUE (account_id, livemode, id)
);
CREATE INDEX IF NOT EXISTS subscription_items_sub ON subscription_items (subscription_id);

-- One row per accepted request (a single record or a whole batch): the unit of dedupe.
CREATE TABLE IF NOT EXISTS usage_ledger (
    id              text PRIMARY KEY,
    item_pk         bigint NOT NULL,
    period_start    bigint NOT NULL,
    records         integer NOT NULL,
    accepted_at     bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_ledger_window ON usage_ledger (item_pk, period_start);

-- The period's usage map: timestamp -> quantity, per item.
CREATE TABLE IF NOT EXISTS usage_points (
    item_pk         bigint NOT NULL,
    ts              bigint NOT NULL,
    quantity        numeric(38, 0) NOT NULL,
    PRIMARY KEY (item_pk, ts)
);

CREATE TABLE IF NOT EXISTS usage_windows (
    item_pk         bigint NOT NULL,
    period_start    bigint NOT NULL,
    period_end      bigint NOT NULL,
    total           numeric(38, 0) NOT NULL DEFAULT 0,
    max             numeric(38, 0) NOT NULL DEFAULT 0,
    last_ts         bigint,
    last_quantity   numeric(38, 0) NOT NULL DEFAULT 0,
    records         bigint NOT NULL DEFAULT 0,
    invoice_id      text,                   -- set when the window is closed by its invoice
    updated         bigint NOT NULL,
    PRIMARY KEY (item_pk, period_start)
);

CREATE TABLE IF NOT EXISTS usage_dead_letters (
    id              text PRIMARY KEY,
    account_id      text NOT NULL,
    livemode        boolean NOT NULL,
    ledger_id       text NOT NULL,
    item_pk         bigint NOT NULL,
    period_start    bigint NOT NULL,
    reason          text NOT NULL,
    payload         jsonb NOT NULL,
    created         bigint NOT NULL
);

-- Aggregator progress, written in the same transaction as the windows (fencing).
CREATE TABLE IF NOT EXISTS consumer_offsets (
    consumer_group  text NOT NULL,
    topic           text NOT NULL,
    partition       integer NOT NULL,
    next_offset     bigint NOT NULL,
    updated         bigint NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition)
);

CREATE TABLE IF NOT EXISTS invoices (
    id                   text PRIMARY KEY,
    account_id           text NOT NULL REFERENCES accounts(id),
    livemode             boolean NOT NULL,
    customer_pk          bigint NOT NULL REFERENCES customers(pk),
    subscription_id      text REFERENCES subscriptions(id),
    billing_reason       text NOT NULL,
    status               text NOT NULL,
    currency             text NOT NULL,
    period_start         bigint NOT NULL,
    period_end           bigint NOT NULL,
    subtotal             numeric(38, 0) NOT NULL DEFAULT 0,
    total                numeric(38, 0) NOT NULL DEFAULT 0,
    amount_paid          numeric(38, 0) NOT NULL DEFAULT 0,
    attempt_count        integer NOT NULL DEFAULT 0,
    next_payment_attempt bigint,
    finalize_at          bigint,
    finalized_at         bigint,
    paid_at              bigint,
    created              bigint NOT NULL,
    -- One invoice per subscription period, whatever number of invoicers run.
    UNIQUE (subscription_id, period_start, billing_reason)
);
CREATE INDEX IF NOT EXISTS invoices_scope ON invoices (account_id, livemode, created DESC, id DESC);
CREATE INDEX IF NOT EXISTS invoices_pending ON invoices (finalize_at) WHERE status = 'draft';
CREATE INDEX IF NOT EXISTS invoices_retry ON invoices (next_payment_attempt) WHERE status = 'open';

CREATE TABLE IF NOT EXISTS invoice_lines (
    id                   text PRIMARY KEY,
    invoice_id           text NOT NULL REFERENCES invoices(id),
    position             integer NOT NULL,
    type                 text NOT NULL,
    item_pk              bigint,
    price_id             text REFERENCES prices(id),
    description          text NOT NULL,
    quantity             numeric(38, 0) NOT NULL,
    unit_amount_decimal  text,
    amount               numeric(38, 0) NOT NULL,
    period_start         bigint NOT NULL,
    period_end           bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS invoice_lines_invoice ON invoice_lines (invoice_id, position);

CREATE TABLE IF NOT EXISTS charges (
    id               text PRIMARY KEY,
    account_id       text NOT NULL,
    livemode         boolean NOT NULL,
    invoice_id       text NOT NULL REFERENCES invoices(id),
    attempt          integer NOT NULL,
    amount           numeric(38, 0) NOT NULL,
    currency         text NOT NULL,
    payment_method   text NOT NULL,
    status           text NOT NULL,
    failure_code     text,
    failure_message  text,
    created          bigint NOT NULL,
    UNIQUE (invoice_id, attempt)            -- a charge is idempotent per invoice attempt
);

-- Outbox: written in the same transaction as the state change it describes.
CREATE TABLE IF NOT EXISTS events (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          text NOT NULL UNIQUE,
    account_id  text NOT NULL,
    livemode    boolean NOT NULL,
    type        text NOT NULL,
    data        jsonb NOT NULL,
    created     bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS events_scope ON events (account_id, livemode, seq DESC);

CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id              text PRIMARY KEY,
    account_id      text NOT NULL REFERENCES accounts(id),
    livemode        boolean NOT NULL,
    url             text NOT NULL,
    enabled_events  text[] NOT NULL,
    secret          text NOT NULL,
    previous_secret text,
    previous_secret_expires bigint,
    status          text NOT NULL DEFAULT 'enabled',
    description     text,
    created         bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id              text PRIMARY KEY,
    event_id        text NOT NULL REFERENCES events(id),
    endpoint_id     text NOT NULL REFERENCES webhook_endpoints(id),
    status          text NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at double precision NOT NULL,
    first_attempt_at bigint,
    last_status_code integer,
    last_error      text,
    delivered_at    bigint,
    created         bigint NOT NULL,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';

CREATE TABLE IF NOT EXISTS webhook_attempts (
    delivery_id     text NOT NULL REFERENCES webhook_deliveries(id),
    attempt         integer NOT NULL,
    status_code     integer,
    error           text,
    duration_ms     integer NOT NULL,
    created         bigint NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
