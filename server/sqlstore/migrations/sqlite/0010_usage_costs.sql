-- Daily usage that is right for the day it names, and tier prices
-- (issue 19), SQLite. See docs/decisions.md, "Issue 19: usage and cost".
--
-- Tier prices are data: monthly_price_cents is the plan's price per
-- calendar month in US cents (seed 000's table); NULL means a custom
-- price by contract (enterprise), for which no cost is computed.
ALTER TABLE tier_configs ADD COLUMN monthly_price_cents BIGINT CHECK (monthly_price_cents IS NULL OR monthly_price_cents >= 0);
UPDATE tier_configs SET monthly_price_cents = 0 WHERE tier = 'free';
UPDATE tier_configs SET monthly_price_cents = 1900 WHERE tier = 'starter';
UPDATE tier_configs SET monthly_price_cents = 4900 WHERE tier = 'pro';
UPDATE tier_configs SET monthly_price_cents = 14900 WHERE tier = 'business';

-- usage_days is the ledger the roll-up reads: one row per account and UTC
-- day ('YYYY-MM-DD') on which something happened. bytes_in and bytes_out
-- are added to in the transaction that records an upload or a download;
-- storage_bytes is the account's storage_used_bytes after the day's last
-- change, and tier its tier after the day's last change (NULL: no change
-- that day; the roll-up carries the last known value forward).
CREATE TABLE usage_days (
  account_id TEXT NOT NULL REFERENCES agentcache_accounts(id) ON DELETE CASCADE,
  day TEXT NOT NULL,
  bytes_in BIGINT NOT NULL DEFAULT 0,
  bytes_out BIGINT NOT NULL DEFAULT 0,
  storage_bytes BIGINT,
  tier VARCHAR(20),
  PRIMARY KEY (account_id, day),
  CONSTRAINT check_usage_days_bytes CHECK (bytes_in >= 0 AND bytes_out >= 0)
);

-- The tier of every day, from the Go clock's times the account rows carry
-- (created_at on insert, updated_at on a tier change).
CREATE TRIGGER usage_days_tier_created AFTER INSERT ON agentcache_accounts
BEGIN
  INSERT INTO usage_days (account_id, day, tier, storage_bytes)
  VALUES (NEW.id, substr(NEW.created_at, 1, 10), NEW.agentcache_tier, NEW.storage_used_bytes)
  ON CONFLICT (account_id, day) DO UPDATE SET tier = excluded.tier;
END;

CREATE TRIGGER usage_days_tier_changed AFTER UPDATE OF agentcache_tier ON agentcache_accounts
BEGIN
  INSERT INTO usage_days (account_id, day, tier)
  VALUES (NEW.id, substr(NEW.updated_at, 1, 10), NEW.agentcache_tier)
  ON CONFLICT (account_id, day) DO UPDATE SET tier = excluded.tier;
END;

-- Accounts older than this migration: their storage and tier as of now
-- stand for every day before their first change, and the downloads the
-- request log still holds become their days' bytes_out.
INSERT INTO usage_days (account_id, day, storage_bytes, tier)
SELECT id, '0001-01-01', storage_used_bytes, agentcache_tier FROM agentcache_accounts;
INSERT INTO usage_days (account_id, day, bytes_out)
SELECT account_id, substr(created_at, 1, 10), SUM(COALESCE(bytes_transferred, 0)) FROM api_requests
WHERE account_id IS NOT NULL AND endpoint = 'GET /api/storage/assets/{id}/download'
GROUP BY account_id, substr(created_at, 1, 10);

-- storage_usage rows: the day's tier, bandwidth in and out (bandwidth_bytes
-- stays the bytes out, what the bandwidth quota counts), and whether the
-- row is final (the day is over and was rolled up; never rewritten).
ALTER TABLE storage_usage ADD COLUMN tier VARCHAR(20);
ALTER TABLE storage_usage ADD COLUMN bytes_in BIGINT NOT NULL DEFAULT 0;
ALTER TABLE storage_usage ADD COLUMN bytes_out BIGINT NOT NULL DEFAULT 0;
ALTER TABLE storage_usage ADD COLUMN final BOOLEAN NOT NULL DEFAULT false;
UPDATE storage_usage SET bytes_out = bandwidth_bytes;

-- Rows the old roll-up wrote for days before their account existed.
DELETE FROM storage_usage WHERE substr(period_start, 1, 10) <
  (SELECT substr(a.created_at, 1, 10) FROM agentcache_accounts a WHERE a.id = storage_usage.account_id);

-- The days whose rows are final, in the order they were finalized: the
-- roll-up catches up from the day after the last one.
CREATE TABLE usage_final_days (
  day TEXT PRIMARY KEY,
  finalized_at DATETIME NOT NULL
);

CREATE INDEX idx_storage_usage_period_account ON storage_usage(period_start, account_id);
