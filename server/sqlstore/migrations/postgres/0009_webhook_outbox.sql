-- Status webhooks (issue 19): the outbox of events sent to an account's
-- webhook_url, PostgreSQL.
--
-- webhook_url is the partner's receiver for this account (NULL: no
-- events are recorded). webhook_seq numbers the account's events (1, 2,
-- ...): incremented, under the account row's lock, in the transaction of
-- the change an event describes, so sequence order is commit order.
-- quota_alert_level is the last storage threshold reported (0, 80, 95 or
-- 100 percent): a quota event is recorded when usage crosses a higher one,
-- and the level drops back (re-arming it) when usage falls below.
ALTER TABLE agentcache_accounts ADD COLUMN webhook_url TEXT;
ALTER TABLE agentcache_accounts ADD COLUMN webhook_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE agentcache_accounts ADD COLUMN quota_alert_level INTEGER NOT NULL DEFAULT 0;

-- One row per event, written in the transaction of the change. payload is
-- the JSON body exactly as sent on every attempt (it never holds a
-- credential). A sender claims a row with lease_holder/lease_until; only
-- the oldest pending event of an account is ever claimable, so events are
-- delivered in order per account. state is pending until delivered (a 2xx)
-- or failed (given up after the retry window).
CREATE TABLE webhook_events (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES agentcache_accounts(id) ON DELETE CASCADE,
  seq BIGINT NOT NULL,
  event_type VARCHAR(40) NOT NULL,
  payload TEXT NOT NULL,
  state VARCHAR(12) NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at TIMESTAMPTZ NOT NULL,
  lease_holder TEXT,
  lease_until TIMESTAMPTZ,
  last_attempt_at TIMESTAMPTZ,
  last_status INTEGER,
  last_error TEXT,
  created_at TIMESTAMPTZ NOT NULL,
  delivered_at TIMESTAMPTZ,
  failed_at TIMESTAMPTZ,
  CONSTRAINT webhook_events_account_seq_key UNIQUE (account_id, seq),
  CONSTRAINT check_webhook_state CHECK (state IN ('pending', 'delivered', 'failed'))
);

CREATE INDEX idx_webhook_events_pending ON webhook_events(next_attempt_at) WHERE state = 'pending';
CREATE INDEX idx_webhook_events_state ON webhook_events(state, created_at);
