// Package engine is JettySpeed, the client side of the upload protocol
// (docs/protocol.md): it plans a file into fixed-size chunks with SHA-256
// manifests, opens an upload session, sends the missing chunks with a
// bounded pool of parallel workers and completes the session.
//
// The pieces:
//
//   - Plan and Manifest: chunking (ChooseChunkSize) and hashing on all
//     cores, the versioned manifest, its validation (the server's rules).
//   - Client: the protocol's HTTP calls (open, status, token, chunk PUT,
//     complete, abort) and its errors (*APIError, Retryable).
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
//
// A file's chunks are read from the file as they are sent, 1 MiB at a
// time (payload.go), so a file upload's memory is a few MiB per worker
// whatever the chunk and file sizes; a stream, which cannot be read
// twice, holds workers+2 chunk buffers. The package
// has no server code and no command-line code; cmd/jetty wires it.
package engine
