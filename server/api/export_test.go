package api

import "context"

// FlushRequestLog waits until every request seen so far is written to
// api_requests, for tests that read the log (the server drains it on
// Close).
func (s *Server) FlushRequestLog(ctx context.Context) error { return s.reqlog.flush(ctx) }
