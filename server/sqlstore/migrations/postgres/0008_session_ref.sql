-- A client's own name for a sized session (issue 18, the pipelined path):
-- an open that names the ref of the account's open session answers that
-- session instead of reserving a second one, so a client killed between
-- its open and its journal finds its session again. '' for sessions
-- opened without one.
ALTER TABLE upload_sessions ADD COLUMN client_ref TEXT NOT NULL DEFAULT '';
CREATE INDEX idx_upload_sessions_ref ON upload_sessions(account_id, client_ref) WHERE client_ref <> '';
