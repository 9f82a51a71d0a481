-- vinr schema: aggregator (issue 4). Idempotent.

-- The ledger keeps each request's records (compact JSON) and its Kafka position, so a
-- window can be rebuilt from the ledger alone (`vinr replay`), in arrival order.
ALTER TABLE usage_ledger ADD COLUMN IF NOT EXISTS kafka_partition integer;
ALTER TABLE usage_ledger ADD COLUMN IF NOT EXISTS kafka_offset bigint;
ALTER TABLE usage_ledger ADD COLUMN IF NOT EXISTS payload bytea;
DO $$ BEGIN
    ALTER TABLE usage_ledger ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    NULL;  -- a server built without lz4 keeps the default (pglz)
END $$;

-- Windows are updated in place on every batch: leave room for HOT updates.
ALTER TABLE usage_windows SET (fillfactor = 70);
ALTER TABLE usage_points SET (fillfactor = 80);

-- Retention: when a window was closed (its invoice finalized) and when its points and
-- ledger rows were purged. The totals stay: summaries and last_ever read them.
ALTER TABLE usage_windows ADD COLUMN IF NOT EXISTS closed_at bigint;
ALTER TABLE usage_windows ADD COLUMN IF NOT EXISTS purged_at bigint;

CREATE OR REPLACE FUNCTION usage_windows_closed_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.invoice_id IS NOT NULL AND NEW.closed_at IS NULL THEN
        NEW.closed_at := extract(epoch FROM clock_timestamp())::bigint;
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS usage_windows_closed_at_insert ON usage_windows;
CREATE TRIGGER usage_windows_closed_at_insert BEFORE INSERT ON usage_windows
    FOR EACH ROW WHEN (NEW.invoice_id IS NOT NULL) EXECUTE FUNCTION usage_windows_closed_at();
DROP TRIGGER IF EXISTS usage_windows_closed_at_update ON usage_windows;
CREATE TRIGGER usage_windows_closed_at_update BEFORE UPDATE OF invoice_id ON usage_windows
    FOR EACH ROW WHEN (NEW.invoice_id IS NOT NULL) EXECUTE FUNCTION usage_windows_closed_at();

UPDATE usage_windows SET closed_at = updated WHERE invoice_id IS NOT NULL AND closed_at IS NULL;

CREATE INDEX IF NOT EXISTS usage_windows_purge ON usage_windows (closed_at)
    WHERE invoice_id IS NOT NULL AND purged_at IS NULL;

-- Dead letters: one per request, listed per account and per item, newest first.
CREATE UNIQUE INDEX IF NOT EXISTS usage_dead_letters_ledger ON usage_dead_letters (ledger_id);
CREATE INDEX IF NOT EXISTS usage_dead_letters_scope
    ON usage_dead_letters (account_id, livemode, created DESC, id DESC);
CREATE INDEX IF NOT EXISTS usage_dead_letters_item
    ON usage_dead_letters (item_pk, created DESC, id DESC);
