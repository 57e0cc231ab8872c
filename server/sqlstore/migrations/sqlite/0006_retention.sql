-- Retention and purging (issue 16), SQLite. See docs/decisions.md,
-- "Retention and purging".
--
-- deleted_at is set when an account is deleted (and never moved by
-- deleting it again); the jobs purge its data once deleted_at is older
-- than the grace period and record purged_at. The row stays as a
-- tombstone. Accounts deleted before this migration take their last
-- update as the time of deletion (a deleted account cannot change after).
ALTER TABLE agentcache_accounts ADD COLUMN deleted_at DATETIME;
ALTER TABLE agentcache_accounts ADD COLUMN purged_at DATETIME;
UPDATE agentcache_accounts SET deleted_at = updated_at WHERE status = 'deleted';

-- AccountsToPurge: the deleted accounts still holding data.
CREATE INDEX idx_agentcache_accounts_to_purge ON agentcache_accounts(deleted_at)
  WHERE status = 'deleted' AND purged_at IS NULL;

-- DeleteRequests of failed requests without an account, kept for a
-- shorter time: without this index each pass would walk every
-- authenticated row between the two cut-offs. The predicate is written
-- exactly as the query writes it (status_code >= 400 as a literal).
CREATE INDEX idx_api_requests_anon_failed ON api_requests(created_at)
  WHERE account_id IS NULL AND status_code >= 400;
