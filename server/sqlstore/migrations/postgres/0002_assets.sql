-- Assets, deduplicated objects, garbage collection, bandwidth accounting,
-- usage roll-ups and job leases (PostgreSQL). See docs/decisions.md.

-- One row per distinct content (SHA-256) per account: the object in the
-- bucket that every asset of the account with that content points at.
-- Deduplication never crosses accounts.
CREATE TABLE stored_objects (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES agentcache_accounts(id) ON DELETE CASCADE,
  content_hash TEXT NOT NULL,
  object_key TEXT NOT NULL,
  s3_bucket VARCHAR(255) NOT NULL,
  size_bytes BIGINT NOT NULL,
  ref_count BIGINT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL,
  CONSTRAINT stored_objects_object_key_key UNIQUE (object_key),
  CONSTRAINT stored_objects_account_hash_key UNIQUE (account_id, content_hash),
  CONSTRAINT check_stored_objects_size CHECK (size_bytes >= 0),
  CONSTRAINT check_stored_objects_ref_count CHECK (ref_count >= 0)
);

-- Every asset the store records points at its object; the foreign key
-- (no cascade) keeps an object from being deleted while referenced.
ALTER TABLE agentcache_assets ADD COLUMN object_id TEXT REFERENCES stored_objects(id);
CREATE INDEX idx_assets_object ON agentcache_assets(object_id);
-- Keyset pagination: newest first, id breaks ties.
CREATE INDEX idx_assets_account_created ON agentcache_assets(account_id, created_at DESC, id DESC);

-- Objects being written (pending: an upload in flight, garbage from
-- not_before on unless CreateAsset records it first) and objects to delete
-- (garbage). claimed_until is the lease of the collector that claimed it.
CREATE TABLE blob_garbage (
  object_key TEXT NOT NULL,
  upload_id TEXT NOT NULL DEFAULT '',
  state VARCHAR(10) NOT NULL,
  not_before TIMESTAMPTZ NOT NULL,
  claimed_until TIMESTAMPTZ,
  created_at TIMESTAMPTZ NOT NULL,
  CONSTRAINT blob_garbage_pkey PRIMARY KEY (object_key),
  CONSTRAINT check_blob_garbage_state CHECK (state IN ('pending', 'garbage'))
);

CREATE INDEX idx_blob_garbage_due ON blob_garbage(not_before);

-- Bandwidth is counted per calendar month (UTC): bandwidth_used_bytes
-- belongs to the month bandwidth_period ('YYYY-MM', '' before the first
-- download) and restarts from zero in a new month.
ALTER TABLE agentcache_accounts ADD COLUMN bandwidth_period TEXT NOT NULL DEFAULT '';

-- One roll-up row per account and period; re-running replaces it.
CREATE UNIQUE INDEX storage_usage_account_period_key ON storage_usage(account_id, period_start);

-- Leases that let one server instance at a time run a job.
CREATE TABLE job_leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL
);

-- Counters that can outgrow INTEGER (SQLite's INTEGER is 64-bit already).
ALTER TABLE agentcache_assets ALTER COLUMN hit_count TYPE BIGINT;
ALTER TABLE storage_usage ALTER COLUMN request_count TYPE BIGINT;
