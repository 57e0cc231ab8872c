// Package engine will hold JettySpeed, the upload engine: chunk planning,
// SHA-256 manifests, the bounded parallel worker pool, retries with
// backoff, the resume journal and progress events. It has no HTTP server
// code and no cobra. Nothing is implemented here yet (see issue 4).
package engine
