-- Credential rotation with an overlap window (issue 8), PostgreSQL.
--
-- When credentials are rotated with an overlap, the outgoing key and its
-- secret hash move here and keep working until prev_key_expires_at; the
-- API compares the expiry with its clock on every request. Revoking the
-- previous key, or rotating without an overlap, sets all three to NULL.
-- The secret is still stored only as its SHA-256.
ALTER TABLE agentcache_accounts ADD COLUMN prev_api_key VARCHAR(255);
ALTER TABLE agentcache_accounts ADD COLUMN prev_api_secret_hash TEXT CHECK (prev_api_secret_hash IS NULL OR length(prev_api_secret_hash) = 64);
ALTER TABLE agentcache_accounts ADD COLUMN prev_key_expires_at TIMESTAMPTZ;
CREATE UNIQUE INDEX agentcache_accounts_prev_api_key_key ON agentcache_accounts (prev_api_key);
