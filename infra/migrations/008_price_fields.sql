-- A price keeps every field its create request accepts, so the object reads back as written.
ALTER TABLE prices ADD COLUMN IF NOT EXISTS nickname text;
ALTER TABLE prices ADD COLUMN IF NOT EXISTS metadata jsonb NOT NULL DEFAULT '{}';
