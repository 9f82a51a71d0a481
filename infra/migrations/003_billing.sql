-- 003: billing. Price history for mid-period price changes, pending invoice items
-- (prorations and carried credit), the dunning schedule's bookkeeping, and indexes for
-- the invoicer's set-based queries. Idempotent.

-- A subscription item's price changes. Usage with a timestamp at or after changed_at is
-- billed at new_price_id; the invoice has one line per price segment of the period.
CREATE TABLE IF NOT EXISTS subscription_item_price_changes (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- orders same-second changes
    item_pk         bigint NOT NULL REFERENCES subscription_items(pk),
    changed_at      bigint NOT NULL,        -- the subscription's time (test clock or real)
    old_price_id    text NOT NULL REFERENCES prices(id),
    new_price_id    text NOT NULL REFERENCES prices(id),
    created         bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS subscription_item_price_changes_item
    ON subscription_item_price_changes (item_pk, changed_at, seq);

-- Amounts waiting for the subscription's next invoice: prorations of licensed items
-- (credits are negative) and credit carried over from an invoice whose total went below 0.
CREATE TABLE IF NOT EXISTS invoice_items (
    id              text PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY,   -- the order they were queued in
    account_id      text NOT NULL REFERENCES accounts(id),
    livemode        boolean NOT NULL,
    subscription_id text NOT NULL REFERENCES subscriptions(id),
    item_pk         bigint,
    price_id        text REFERENCES prices(id),
    description     text NOT NULL,
    quantity        numeric(38, 0) NOT NULL,
    amount          numeric(38, 0) NOT NULL,
    proration       boolean NOT NULL DEFAULT false,
    period_start    bigint NOT NULL,
    period_end      bigint NOT NULL,
    invoice_id      text REFERENCES invoices(id),   -- NULL until an invoice takes it
    created         bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS invoice_items_pending ON invoice_items (subscription_id, seq)
    WHERE invoice_id IS NULL;

ALTER TABLE invoice_lines ADD COLUMN IF NOT EXISTS proration boolean NOT NULL DEFAULT false;

-- Automatic attempts made so far: indexes the retry schedule (manual /pay attempts count
-- in attempt_count but do not move the schedule).
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS auto_attempt_count integer NOT NULL DEFAULT 0;

-- Due subscriptions, split by clock so each part is an index range. Supersedes
-- subscriptions_due, whose predicate did not match the invoicer's statuses.
DROP INDEX IF EXISTS subscriptions_due;
CREATE INDEX IF NOT EXISTS subscriptions_due_now ON subscriptions (current_period_end)
    WHERE test_clock_id IS NULL AND status IN ('active', 'past_due', 'unpaid');
CREATE INDEX IF NOT EXISTS subscriptions_final_pending ON subscriptions (id)
    WHERE final_invoice_pending;
CREATE INDEX IF NOT EXISTS subscriptions_clock ON subscriptions (test_clock_id)
    WHERE test_clock_id IS NOT NULL;

CREATE INDEX IF NOT EXISTS charges_scope ON charges (account_id, livemode, created DESC, id DESC);
CREATE INDEX IF NOT EXISTS invoice_lines_item ON invoice_lines (item_pk, period_start);
