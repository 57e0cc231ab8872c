-- The operator console (issue 22, server/console). Sessions live in the
-- database so that every instance behind a load balancer knows them; the
-- cookie's value is never stored, only its SHA-256 (hex).
CREATE TABLE console_sessions (
  id_hash TEXT PRIMARY KEY,
  created_at TIMESTAMPTZ NOT NULL,
  last_seen_at TIMESTAMPTZ NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL,
  CONSTRAINT check_console_session_hash CHECK (length(id_hash) = 64)
);
CREATE INDEX idx_console_sessions_last_seen ON console_sessions(last_seen_at);

-- Every sign-in (ok or not), sign-out and operator action; listed newest
-- first by id, a page at a time.
CREATE TABLE console_audit (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at TIMESTAMPTZ NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL DEFAULT '',
  result TEXT NOT NULL,
  ip TEXT NOT NULL DEFAULT '',
  detail TEXT NOT NULL DEFAULT ''
);

-- The console's account search: the user id and the email
-- (case-insensitively), exact or by their beginning, as ranges of the
-- byte order (~>=~, ~<~) that text_pattern_ops indexes serve whatever
-- the database's collation.
CREATE INDEX idx_agentcache_accounts_user_id_pattern ON agentcache_accounts(agentcache_user_id text_pattern_ops);
CREATE INDEX idx_agentcache_accounts_email_lower ON agentcache_accounts(lower(agentcache_email) text_pattern_ops);
