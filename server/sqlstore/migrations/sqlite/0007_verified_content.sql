-- What the server verified, and completion leases (issue 16), SQLite.
--
-- agentcache_assets.content_hash stays the whole file's SHA-256 as the
-- uploader declared it; sha256_verified says whether the server hashed
-- every byte in order and got it (single-request uploads, one-chunk
-- files, the file store's assembly). content_id is the verified identity
-- deduplication and the ETag use: the SHA-256 when verified, else the
-- manifest's chunk-list id ("m1-" + 64 hex), which the per-chunk checks
-- verify. stored_objects.content_hash now holds that content id.
ALTER TABLE agentcache_assets ADD COLUMN sha256_verified BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE agentcache_assets ADD COLUMN content_id TEXT NOT NULL DEFAULT '';

-- Before this migration a chunked upload's whole-file hash was taken on
-- trust. Single-request uploads ('api') were always hashed by the server.
UPDATE agentcache_assets SET sha256_verified = true WHERE uploaded_via = 'api';

-- An object any chunked upload touched may carry a hash it never had: it
-- must never be a deduplication target again. Its key becomes unique and
-- unmatchable ("unverified-" and the object's id); the asset keeps its
-- bytes and its declared hash.
UPDATE stored_objects SET content_hash = 'unverified-' || id
WHERE EXISTS (SELECT 1 FROM agentcache_assets a WHERE a.object_id = stored_objects.id AND a.uploaded_via <> 'api');
UPDATE agentcache_assets SET content_id = (SELECT o.content_hash FROM stored_objects o WHERE o.id = agentcache_assets.object_id)
WHERE object_id IS NOT NULL;
UPDATE agentcache_assets SET sha256_verified = false WHERE content_id LIKE 'unverified-%';

DROP INDEX IF EXISTS idx_assets_account_hash;
CREATE INDEX idx_assets_account_content ON agentcache_assets(account_id, content_id);

-- The lease of a completion: renewed by its completer while it works; a
-- completion whose lease ran out died with its server and may be taken
-- over (docs/protocol.md). NULL outside state 'completing'.
ALTER TABLE upload_sessions ADD COLUMN lease_until DATETIME;
