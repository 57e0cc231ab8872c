// Package probe is the receiving end of the edge probes (docs/edges.md):
// the handler of POST /api/jetty/probe that the origin and every relay
// serve. It reads a probe's body for a bounded time, discards it, and
// reports how many bytes came and how long they took from the first to
// the last, measured by the receiver. The sending side (candidates,
// probes, scoring) is the client's, in package edges.
package probe

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// Handler answers probes (POST protocol.PathProbe) on the origin and on
// relays: it reads the body for at most ProbeReadTime and MaxProbeBytes
// (and, when the probe names ProbeParamMillis, for at most that long from
// the first byte), discards it, and reports what it read and how long the
// bytes took from the first to the last, measured here so that the
// sender's socket buffers do not flatter the figure.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "probes are POSTed", "code": "method_not_allowed"})
			return
		}
		if r.ContentLength > protocol.MaxProbeBytes {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "a probe carries at most 1 MiB", "code": "too_large"})
			return
		}
		deadline := time.Now().Add(protocol.ProbeReadTime)
		budget := probeBudget(r)
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(deadline)
		buf := make([]byte, 32<<10)
		var n int64
		var first, last time.Time
		body := io.LimitReader(r.Body, protocol.MaxProbeBytes)
		for {
			k, err := body.Read(buf)
			if k > 0 {
				now := time.Now()
				if first.IsZero() {
					first = now
					if budget > 0 && now.Add(budget).Before(deadline) {
						deadline = now.Add(budget)
						_ = rc.SetReadDeadline(deadline)
					}
				}
				last, n = now, n+int64(k)
			}
			if err != nil || time.Now().After(deadline) {
				if err != nil && !errors.Is(err, io.EOF) && n == 0 {
					writeJSON(w, http.StatusBadRequest, map[string]string{"error": "probe body could not be read", "code": "invalid_request"})
					return
				}
				break
			}
		}
		// The deadline stays: the server closes the rest of a body the
		// probe did not read (up to 256 KiB) after the answer, and must
		// not wait for a sender gone silent (a read body cleared it).
		w.Header().Set("Connection", "close") // the rest of an unread body is not worth draining
		writeJSON(w, http.StatusOK, protocol.ProbeResult{Bytes: n, Micros: last.Sub(first).Microseconds()})
	})
}

// probeBudget is the reading time a probe asks for (ProbeParamMillis),
// 0 when it names none or an unusable one.
func probeBudget(r *http.Request) time.Duration {
	ms, err := strconv.Atoi(r.URL.Query().Get(protocol.ProbeParamMillis))
	if err != nil || ms < 1 || time.Duration(ms)*time.Millisecond > protocol.ProbeReadTime {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
