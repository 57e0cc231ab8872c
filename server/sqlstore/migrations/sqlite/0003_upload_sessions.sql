-- Upload sessions of the chunked upload protocol (docs/protocol.md), SQLite.
--
-- The manifest is stored as TEXT, exactly as the client sent it: the
-- server never queries inside it, JSONB would rewrite it (key order,
-- whitespace, duplicate keys) and cost a parse on every insert, and TEXT
-- is the same type in both dialects. NULL until a stream session
-- completes. content_hash is '' and size_bytes -1 for a stream session
-- until then (stream is set for such a session and never changes).
-- asset_id has no foreign key: the asset may be deleted later, and the
-- completed session still records what it produced.
CREATE TABLE upload_sessions (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES agentcache_accounts(id) ON DELETE CASCADE,
  object_key TEXT NOT NULL,
  upload_id TEXT NOT NULL DEFAULT '',
  manifest TEXT,
  content_hash TEXT NOT NULL DEFAULT '',
  size_bytes BIGINT NOT NULL,
  chunk_size BIGINT NOT NULL,
  chunk_count INTEGER NOT NULL,
  stream BOOLEAN NOT NULL DEFAULT false,
  reservation_id TEXT NOT NULL DEFAULT '',
  reserved_bytes BIGINT NOT NULL DEFAULT 0,
  state VARCHAR(12) NOT NULL DEFAULT 'open',
  asset_id TEXT NOT NULL DEFAULT '',
  deduplicated BOOLEAN NOT NULL DEFAULT false,
  filename TEXT NOT NULL DEFAULT '',
  content_type TEXT NOT NULL DEFAULT '',
  cache_key TEXT NOT NULL DEFAULT '',
  ttl_seconds BIGINT NOT NULL DEFAULT 0,
  expires_at DATETIME NOT NULL,
  created_at DATETIME NOT NULL,
  updated_at DATETIME NOT NULL,
  CONSTRAINT check_upload_sessions_state CHECK (state IN ('open', 'completing', 'completed', 'aborted')),
  CONSTRAINT check_upload_sessions_size CHECK (size_bytes >= -1 AND chunk_size >= 0 AND chunk_count >= 0),
  CONSTRAINT check_upload_sessions_reserved CHECK (reserved_bytes >= 0 AND ttl_seconds >= 0),
  CONSTRAINT check_upload_sessions_completed CHECK (state <> 'completed' OR asset_id <> '')
);

-- OpenSessionFor: the open sessions of an account for one content.
CREATE INDEX idx_upload_sessions_account_hash ON upload_sessions(account_id, content_hash, state);
-- Sweeps of expired sessions.
CREATE INDEX idx_upload_sessions_expires ON upload_sessions(expires_at);
