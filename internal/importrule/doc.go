// Package importrule holds the import rule of the house as a test: client
// packages (the engine, edge selection, the keychain, the CLI's helpers)
// never import server packages (server/...), and server packages never
// import client packages; the two meet only in package protocol, which
// imports nothing of the module. cmd/jetty is the one binary holding both,
// and only the files of `jetty server` and `jetty edge` import server
// packages. docs/layout.md states the rule.
package importrule
