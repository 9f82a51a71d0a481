-- Per-account overrides of the per-key rate limits (domain/ratelimit/store.py). A NULL keeps
-- the deployment's default for that value (VINR_CONTROL_RATE_LIMIT, VINR_USAGE_RATE_BURST, …).
CREATE TABLE IF NOT EXISTS account_rate_limits (
    account_id      text PRIMARY KEY REFERENCES accounts(id),
    control_rate    integer CHECK (control_rate BETWEEN 1 AND 1000000000),
    control_burst   integer CHECK (control_burst BETWEEN 1 AND 1000000000),
    usage_rate      integer CHECK (usage_rate BETWEEN 1 AND 1000000000),
    usage_burst     integer CHECK (usage_burst BETWEEN 1 AND 1000000000),
    updated         bigint NOT NULL
);
