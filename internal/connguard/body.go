package connguard

import (
	"io"
	"net/http"
	"time"

	"github.com/jettythunder/jetty/internal/idleread"
)

// DefaultBodyTimeout is how long a request body may take when the caller
// names no other time: the body idle time of uploads (idleread).
const DefaultBodyTimeout = idleread.DefaultIdle

// Bodies gives every request that carries a body a read deadline of
// timeout (DefaultBodyTimeout when 0) from the moment its handler starts.
// http.Server has a header timeout but none for bodies, and its discard
// of a small body the handler left unread blocks before the answer goes
// out: a request declaring 100 bytes and sending none held its
// connection forever, on any route, 404s included.
//
// The deadline is total, which suits every body but uploads: a handler
// that takes a long body (a chunk, a single-request upload, a manifest)
// replaces it with an idle timeout (idleread.Body) once the request is
// authenticated, so a slow but steady body is never cut. Once a body is
// read to its end the server clears the deadline itself (its background
// read for a closed connection), so a long answer is never cut either.
// Requests without a body get no deadline. Between requests the server's
// IdleTimeout and ReadHeaderTimeout apply, and a Guard evicts idle
// unauthenticated connections first.
//
// When the connection is tracked by a Guard, Bodies tells it whether the
// request still owes body bytes.
func Bodies(next http.Handler, timeout time.Duration) http.Handler {
	if timeout <= 0 {
		timeout = DefaultBodyTimeout
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Context().Value(connKey{}).(*conn)
		hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
		if hasBody {
			// Under a writer that cannot set deadlines (HTTP/2, a test
			// recorder) the body goes on without one.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(timeout))
			r.Body = &body{ReadCloser: r.Body, c: c}
		}
		c.begin(hasBody)
		defer c.end()
		next.ServeHTTP(w, r)
	})
}

// body tells the guard when the request body has been read to its end.
type body struct {
	io.ReadCloser
	c    *conn
	done bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.c.bodyRead()
	}
	return n, err
}
