// Package edges is the client's side of the edges (docs/edges.md): how an
// upload picks the receivers of its chunks. It asks the origin for
// candidates (Candidates), probes them concurrently within a bounded time
// (Probe: round trips and a throughput sample), scores them (Score, a
// pure function) and turns the scores into engine.Routes with weights
// (Selector, an engine.EdgeSelector); Evaluate and Report are the same
// for `jetty edges`.
//
// It is a client package: it imports no server package. The wire types
// of the edge protocol and relay authentication live in package protocol
// (and protocol/edgeauth); the receiving ends are server components: the
// relay node behind `jetty edge` in server/relay, the probe handler in
// server/probe.
package edges
