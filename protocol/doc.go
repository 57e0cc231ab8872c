// Package protocol is where the client, the relays and the server meet:
// the wire contract of jetty, declared once (docs/protocol.md, docs/api.md,
// docs/edges.md).
//
// It holds the manifest and its rules, the protocol's limits and the
// chunk-size choice; every request and answer body of the control API
// (sessions, tokens, presign, assets, whoami, quota) and of the edge
// protocol (heartbeats, session lookups, candidates, probes); the error
// body, the error codes and the one map from codes to HTTP statuses; the
// header and path names; and the format of API keys and secrets.
//
// It is a leaf: it imports nothing of this module, so every side may
// import it and none imports another through it. Client packages (engine,
// edges, keychain, the CLI's client) and server packages (server/...)
// never import each other; TestImportRule in internal/importrule checks
// it. Relay authentication lives in the sub-package edgeauth.
package protocol
