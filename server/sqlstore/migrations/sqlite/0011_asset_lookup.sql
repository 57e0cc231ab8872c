-- Lookups of assets by cache key and by AgentCache pipeline (issue 19):
-- GET /api/storage/assets?cache_key=K and ?pipeline_id=P list an
-- account's assets newest first, so each index leads with the account and
-- the value and ends in the listing's order (keyset pagination). Seed
-- 002's idx_assets_cache_key (cache_key alone) stays, as the seed has it.
CREATE INDEX idx_assets_account_cache_key ON agentcache_assets(account_id, cache_key, created_at DESC, id DESC);
CREATE INDEX idx_assets_account_pipeline ON agentcache_assets(account_id, agentcache_pipeline_id, created_at DESC, id DESC);

-- The pipeline id an upload session was opened with, recorded with its
-- asset at completion: '' for none, else a UUID in canonical form.
ALTER TABLE upload_sessions ADD COLUMN pipeline_id TEXT NOT NULL DEFAULT '';
