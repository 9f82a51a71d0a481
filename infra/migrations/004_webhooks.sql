-- Webhooks: deleted endpoints are kept (their deliveries stay listed on their events) but
-- hidden, disabled and never written to again; pending deliveries per endpoint are found by
-- index when an endpoint is disabled; deliveries can now also be 'canceled'.
ALTER TABLE webhook_endpoints ADD COLUMN IF NOT EXISTS deleted_at bigint;

CREATE INDEX IF NOT EXISTS webhook_deliveries_endpoint_pending
    ON webhook_deliveries (endpoint_id) WHERE status = 'pending';

CREATE INDEX IF NOT EXISTS webhook_endpoints_failing
    ON webhook_endpoints (status) WHERE status = 'failing';
