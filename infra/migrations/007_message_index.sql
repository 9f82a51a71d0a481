-- vinr schema: several requests per Kafka message (wire v2). Idempotent.

-- A message may carry several requests; their order inside it is part of arrival order,
-- which replay follows (partition, offset, then this index).
ALTER TABLE usage_ledger ADD COLUMN IF NOT EXISTS kafka_index integer NOT NULL DEFAULT 0;
