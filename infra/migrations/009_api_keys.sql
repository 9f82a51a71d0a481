-- vinr schema: several keys per account and mode, secret or restricted, with a public id,
-- an optional name and expiry, and a change counter every API process polls. Idempotent.

-- The public id. Existing keys get one derived from their stored hash (the id the API
-- already reported for them); new keys get a random one (infra.ids.new_id("key")).
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS id text;
UPDATE api_keys SET id = 'key_' || left(encode(key_hash, 'hex'), 24) WHERE id IS NULL;
ALTER TABLE api_keys ALTER COLUMN id SET NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_id ON api_keys (id);

-- secret: every operation; restricted: only what `permissions` allows (domain.permissions).
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'secret';
ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_kind;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_kind CHECK (kind IN ('secret', 'restricted'));
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS permissions text[] NOT NULL DEFAULT '{}';
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS name text;
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS expires_at bigint;  -- unix s; NULL: never
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS revoked_at bigint;  -- unix s; NULL for keys revoked before it existed

CREATE INDEX IF NOT EXISTS api_keys_scope ON api_keys (account_id, livemode, created DESC, id DESC);

-- One row, bumped in the same transaction as every revocation and every expiry change:
-- an API process that sees it change drops its cached key lookups (ADR 0008).
CREATE TABLE IF NOT EXISTS api_key_epoch (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch       bigint NOT NULL
);
INSERT INTO api_key_epoch (singleton, epoch) VALUES (true, 0) ON CONFLICT DO NOTHING;
