// Package edges will hold the edge catalogue, edge probing and scoring,
// and the stateless relay node behind `jetty edge`. Nothing is implemented
// here yet (see issue 6).
package edges
