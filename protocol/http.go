package protocol

// Paths of the control API and the data plane (docs/api.md). A path that
// takes an id ends in "/" or holds "{id}", the form http.ServeMux routes.
const (
	PathWhoami = "/api/whoami"
	PathQuota  = "/api/agentcache/quota"

	// PathUpload is the single-request upload (multipart or raw body).
	PathUpload = "/api/storage/upload"
	// PathAssets lists assets; PathAssets + "/" + id is one asset, and
	// PathAssets + "/" + id + "/download" its bytes.
	PathAssets = "/api/storage/assets"

	// PathSessions opens a session; PathSessions + "/" + id is its
	// status (GET) or its abort (DELETE), then "/token", "/complete",
	// "/presign" and "/chunks/{index}".
	PathSessions = "/api/jetty/sessions"

	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
)

// Headers of the protocol.
const (
	// HeaderAPISecret carries the API secret beside
	// "Authorization: Bearer <API key>".
	HeaderAPISecret = "X-API-Secret"
	// HeaderUploadToken carries a session's upload token on chunk PUTs
	// and presign calls (or "Authorization: Bearer <token>").
	HeaderUploadToken = "X-Upload-Token"
	// HeaderChunkSHA256 is a chunk's SHA-256, in hex, on its PUT.
	HeaderChunkSHA256 = "X-Chunk-SHA256"
	// HeaderContentSHA256 is a whole file's SHA-256: declared on a raw
	// single-request upload, answered on downloads of verified content.
	HeaderContentSHA256 = "X-Content-SHA256"
	// HeaderFilename, HeaderCacheKey and HeaderTTL describe a raw
	// single-request upload.
	HeaderFilename = "X-Filename"
	HeaderCacheKey = "X-Cache-Key"
	HeaderTTL      = "X-TTL"
	// HeaderPipelineID names the AgentCache pipeline (a UUID) an asset
	// belongs to, on a single-request upload (raw or multipart; the form
	// field agentcache_pipeline_id overrides it).
	HeaderPipelineID = "X-AgentCache-Pipeline-Id"
	// HeaderRetryAfter says how long to wait: seconds or an HTTP date.
	HeaderRetryAfter = "Retry-After"
	// HeaderForwardedBy names the relay that forwarded a chunk.
	HeaderForwardedBy = "X-Forwarded-By"
)
