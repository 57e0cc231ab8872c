// Package engine is the client side of jetty: the one client of the
// server's API (Client) and JettySpeed, the upload protocol
// (docs/protocol.md): it plans a file into fixed-size chunks with SHA-256
// manifests, opens an upload session, sends the missing chunks with a
// bounded pool of parallel workers and completes the session; and it
// downloads assets with resumable, verified ranged requests.
//
// The pieces:
//
//   - Plan and Manifest: chunking (ChooseChunkSize) and hashing on all
//     cores, the versioned manifest, its validation (the server's rules).
//   - Client: every HTTP call to the server over one transport (base
//     URL, API key and secret, User-Agent) with one error decoder: the
//     account and asset calls of the command line (assets.go: whoami,
//     quota, list, get, delete, ranged reads), the session calls (open,
//     status, token, complete) and the data plane (chunk PUTs, presign,
//     presigned parts). Every error answer is an *APIError (status, code,
//     message, Retry-After in both forms, the missing chunks); Retryable
//     says which are worth another attempt.
//   - Upload, UploadReader, UploadStream: the whole flow with retries
//     (exponential backoff with equal jitter, Retry-After, single-flight
//     token refresh), a shared bandwidth limit, progress events (Progress,
//     Rate) and, for files, a resume journal so that a second run sends
//     only what the server lacks.
//   - Routes (router.go): with Options.Edges, chunks go through several
//     routes at once — the origin, relays, the object store via presigned
//     part URLs — each with a share of the workers by weight, all workers
//     taking chunks from one queue; a per-route circuit breaker moves the
//     chunks of a failing route to the others, the origin being the last
//     resort. Result.Edges says what each route took.
//   - Download (download.go): an asset into a file through a part file
//     next to it, in parallel 8 MiB ranges retried on their own, resumed
//     from the ranges its record lists, checked against the asset's
//     SHA-256 before it is renamed onto the target; no file is written
//     through a link (internal/safefile).
//
// A file's chunks are read from the file as they are sent, 1 MiB at a
// time (payload.go), so a file upload's memory is a few MiB per worker
// whatever the chunk and file sizes; a stream, which cannot be read
// twice, holds workers+2 chunk buffers. The package
// has no server code and no command-line code; cmd/jetty wires it.
package engine
