// Package e2e holds end-to-end tests of the JettySpeed engine against the
// real companion server: in-process servers on the embedded default and
// on PostgreSQL + MinIO + Redis, clients in child processes that the tests
// kill -9, and benchmarks of the client's memory. It has no non-test code.
package e2e
