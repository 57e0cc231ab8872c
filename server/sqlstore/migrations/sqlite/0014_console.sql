-- The operator console (issue 22, server/console). Sessions live in the
-- database so that every instance behind a load balancer knows them; the
-- cookie's value is never stored, only its SHA-256 (hex).
CREATE TABLE console_sessions (
  id_hash TEXT PRIMARY KEY,
  created_at DATETIME NOT NULL,
  last_seen_at DATETIME NOT NULL,
  expires_at DATETIME NOT NULL,
  CONSTRAINT check_console_session_hash CHECK (length(id_hash) = 64)
);
CREATE INDEX idx_console_sessions_last_seen ON console_sessions(last_seen_at);

-- Every sign-in (ok or not), sign-out and operator action; listed newest
-- first by id, a page at a time.
CREATE TABLE console_audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at DATETIME NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL DEFAULT '',
  result TEXT NOT NULL,
  ip TEXT NOT NULL DEFAULT '',
  detail TEXT NOT NULL DEFAULT ''
);

-- The console's account search: email case-insensitively, exact or by
-- its beginning (a range of lower(email)). The user id's exact and
-- prefix lookups use the unique index of agentcache_user_id (SQLite
-- compares text byte by byte).
CREATE INDEX idx_agentcache_accounts_email_lower ON agentcache_accounts(lower(agentcache_email));
