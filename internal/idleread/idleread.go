// Package idleread bounds how long an HTTP handler waits for the next
// bytes of a request body. A client that opens a chunk upload and then
// goes silent (a dead laptop, a half-open connection, a slowloris) would
// otherwise hold a worker slot and a goroutine until TCP gives up, which
// can take many minutes. Body moves the connection's read deadline
// forward as bytes arrive, so a body that keeps flowing, however slowly,
// is never cut, and one that stalls for the idle time fails with ErrIdle.
package idleread

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// ErrIdle is returned by a body that received nothing for the idle time.
var ErrIdle = errors.New("request body stalled")

// DefaultIdle is how long a body may stall when the caller names no
// other time: far longer than any pause on a working link.
const DefaultIdle = 30 * time.Second

// Body returns r.Body with an idle timeout of idle (DefaultIdle when 0).
// When the server cannot set read deadlines (HTTP/2 over some
// transports, a test recorder) the body is returned as it is.
func Body(w http.ResponseWriter, r *http.Request, idle time.Duration) io.ReadCloser {
	if idle <= 0 {
		idle = DefaultIdle
	}
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(idle)); err != nil {
		return r.Body
	}
	return &body{ReadCloser: r.Body, rc: rc, idle: idle, set: time.Now()}
}

type body struct {
	io.ReadCloser
	rc      *http.ResponseController
	idle    time.Duration
	set     time.Time // when the deadline was last moved
	done    bool
	stalled bool
}

// Stalled reports whether rc, a body from Body, failed with ErrIdle. It
// answers even when a library between the body and the caller dropped
// the error's chain (an S3 SDK, an HTTP client forwarding the body).
func Stalled(rc io.Reader) bool {
	b, ok := rc.(*body)
	return ok && b.stalled
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		// Moving the deadline on every read costs a timer update each;
		// once per tenth of the idle time is plenty.
		if now := time.Now(); now.Sub(b.set) > b.idle/10 {
			b.rc.SetReadDeadline(now.Add(b.idle))
			b.set = now
		}
	}
	if err != nil && !b.done {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			b.stalled = true
			err = fmt.Errorf("%w: nothing received for %s", ErrIdle, b.idle)
		}
		if err == io.EOF {
			// The body is complete: no deadline for the rest of the
			// exchange (the response is written with no read pending).
			b.rc.SetReadDeadline(time.Time{})
			b.done = true
		}
	}
	return n, err
}
