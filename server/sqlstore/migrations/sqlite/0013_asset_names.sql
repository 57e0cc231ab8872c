-- Lookups of assets by file name (issue 20): the command line resolves a
-- name given where an id is expected (GET /api/storage/assets?name=N) and
-- `jetty ls photos/` lists the names under a prefix (?prefix=P, a range
-- of the byte order). Both list an account's assets newest first, so the
-- index leads with the account and the name and ends in the listing's
-- order (keyset pagination). SQLite compares text byte by byte (BINARY).
CREATE INDEX idx_assets_account_filename ON agentcache_assets(account_id, filename, created_at DESC, id DESC);
