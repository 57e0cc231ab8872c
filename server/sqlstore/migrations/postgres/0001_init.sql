-- jetty server schema, PostgreSQL. Adapted from seed 002 (see
-- docs/decisions.md): ids are TEXT UUIDs made in Go, agentcache_user_id is
-- free text, the API secret is stored only as its SHA-256, usage is counted
-- in bytes, and quota reservations have their own table.

CREATE TABLE tier_configs (
  tier VARCHAR(20) PRIMARY KEY,
  storage_quota_gb BIGINT NOT NULL,
  bandwidth_quota_gb BIGINT NOT NULL,
  jetty_speed_enabled BOOLEAN NOT NULL DEFAULT false,
  rate_limit_per_minute INTEGER NOT NULL DEFAULT 60,
  max_file_size_mb BIGINT NOT NULL DEFAULT 100,
  CONSTRAINT check_tier_quotas CHECK (storage_quota_gb BETWEEN 0 AND 1000000
    AND bandwidth_quota_gb BETWEEN 0 AND 1000000
    AND rate_limit_per_minute >= 0 AND max_file_size_mb >= 0)
);

INSERT INTO tier_configs (tier, storage_quota_gb, bandwidth_quota_gb, jetty_speed_enabled, rate_limit_per_minute, max_file_size_mb) VALUES
  ('free', 0, 0, false, 10, 10),
  ('starter', 2, 10, false, 60, 50),
  ('pro', 20, 50, true, 300, 500),
  ('business', 100, 200, true, 1000, 1000),
  ('enterprise', 1000, 5000, true, 10000, 5000)
ON CONFLICT (tier) DO NOTHING;

CREATE TABLE agentcache_accounts (
  id TEXT PRIMARY KEY,
  agentcache_user_id TEXT NOT NULL,
  agentcache_email VARCHAR(255) NOT NULL,
  agentcache_tier VARCHAR(20) NOT NULL REFERENCES tier_configs(tier),
  api_key VARCHAR(255) NOT NULL,
  api_secret_hash TEXT NOT NULL,
  storage_quota_gb BIGINT NOT NULL,
  bandwidth_quota_gb BIGINT NOT NULL,
  jetty_speed_enabled BOOLEAN NOT NULL DEFAULT false,
  s3_bucket_name VARCHAR(255) NOT NULL,
  s3_prefix TEXT NOT NULL,
  status VARCHAR(20) NOT NULL DEFAULT 'active',
  storage_used_bytes BIGINT NOT NULL DEFAULT 0,
  storage_reserved_bytes BIGINT NOT NULL DEFAULT 0,
  bandwidth_used_bytes BIGINT NOT NULL DEFAULT 0,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  last_accessed TIMESTAMPTZ,
  CONSTRAINT agentcache_accounts_user_id_key UNIQUE (agentcache_user_id),
  CONSTRAINT agentcache_accounts_api_key_key UNIQUE (api_key),
  CONSTRAINT check_status CHECK (status IN ('active', 'suspended', 'deleted')),
  CONSTRAINT check_api_secret_hash CHECK (length(api_secret_hash) = 64),
  CONSTRAINT check_storage_used CHECK (storage_used_bytes >= 0),
  CONSTRAINT check_storage_reserved CHECK (storage_reserved_bytes >= 0),
  CONSTRAINT check_bandwidth_used CHECK (bandwidth_used_bytes >= 0)
);

CREATE INDEX idx_agentcache_accounts_email ON agentcache_accounts(agentcache_email);

CREATE TABLE storage_usage (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES agentcache_accounts(id) ON DELETE CASCADE,
  storage_bytes BIGINT NOT NULL,
  bandwidth_bytes BIGINT NOT NULL,
  request_count INTEGER NOT NULL,
  period_start TIMESTAMPTZ NOT NULL,
  period_end TIMESTAMPTZ NOT NULL,
  storage_cost DECIMAL(10,4),
  bandwidth_cost DECIMAL(10,4),
  total_cost DECIMAL(10,4),
  recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_storage_usage_account ON storage_usage(account_id);
CREATE INDEX idx_storage_usage_period ON storage_usage(period_start, period_end);

CREATE TABLE agentcache_assets (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES agentcache_accounts(id) ON DELETE CASCADE,
  s3_key TEXT NOT NULL,
  s3_bucket VARCHAR(255) NOT NULL,
  filename TEXT NOT NULL,
  content_type VARCHAR(100),
  size_bytes BIGINT NOT NULL,
  content_hash TEXT NOT NULL, -- SHA-256; deduplication is per account
  cache_key TEXT,
  agentcache_pipeline_id TEXT,
  hit_count INTEGER NOT NULL DEFAULT 0,
  last_accessed TIMESTAMPTZ,
  expires_at TIMESTAMPTZ,
  uploaded_via VARCHAR(20) NOT NULL DEFAULT 'api', -- 'api' or 'jettyspeed'
  upload_speed_mbps DECIMAL(10,2),
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_assets_account_hash ON agentcache_assets(account_id, content_hash);
CREATE INDEX idx_assets_cache_key ON agentcache_assets(cache_key);
CREATE INDEX idx_assets_expires ON agentcache_assets(expires_at);

CREATE TABLE api_requests (
  id TEXT PRIMARY KEY,
  account_id TEXT REFERENCES agentcache_accounts(id) ON DELETE SET NULL,
  method TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  status_code INTEGER NOT NULL,
  response_time_ms BIGINT,
  bytes_transferred BIGINT,
  error_message TEXT,
  ip_address TEXT,
  user_agent TEXT,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_api_requests_account_created ON api_requests(account_id, created_at);
CREATE INDEX idx_api_requests_created ON api_requests(created_at);

CREATE TABLE quota_reservations (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES agentcache_accounts(id) ON DELETE CASCADE,
  bytes BIGINT NOT NULL CHECK (bytes > 0),
  created_at TIMESTAMPTZ NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX idx_quota_reservations_expires ON quota_reservations(expires_at);
CREATE INDEX idx_quota_reservations_account ON quota_reservations(account_id);
