-- Two-phase finalization: a draft is first marked closing (ingest stops placing usage in its
-- period), and finalized only after a settle time longer than ingest's publish deadline, so
-- every record a client was told was accepted is on the topic before the watermark is read.
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS closing_at double precision;
