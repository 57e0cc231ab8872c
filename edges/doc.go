// Package edges is everything about the receivers of JettySpeed chunks
// other than the origin's own endpoint:
//
//   - the wire types of the edge protocol (heartbeats, session lookups,
//     optimal-edges, probes), shared by the server, the relay and the
//     client;
//   - the authentication of relay-to-origin calls (an HMAC over the
//     request with a key derived from JETTY_EDGE_SECRET, with a timestamp)
//     and the sealing of the upload-token key the origin hands its relays;
//   - the client side: asking for candidates, probing them concurrently
//     within a bounded time, scoring them and turning the scores into
//     engine.Routes with weights (Selector).
//
// The relay node behind `jetty edge` lives in edges/relay. The protocol
// is described in docs/edges.md.
package edges
