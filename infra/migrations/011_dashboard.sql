-- vinr schema: an endpoint's recent deliveries, newest first (the Dashboard's webhook page),
-- without reading every delivery of the account. Idempotent.
CREATE INDEX IF NOT EXISTS webhook_deliveries_endpoint_recent
    ON webhook_deliveries (endpoint_id, created DESC, id DESC);
