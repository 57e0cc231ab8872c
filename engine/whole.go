package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// A server with chunked uploads turned off (JETTYSPEED_ENABLED=false)
// refuses to open sessions with 403 jettyspeed_disabled. A file then goes
// whole in one verified request (POST /api/storage/upload with
// X-Content-SHA256), as small files always do: read once to hash it, once
// more to send it, streamed, never held in memory. It cannot resume: an
// interrupted one starts over. A stream (stdin) cannot be sent this way
// (it would have to be held, to be hashed before it is sent, or sent
// unverified): it fails with what to do.

// MethodWhole: the server takes no sessions; the file went whole in one
// verified request.
const MethodWhole = "whole_request"

// IsJettySpeedOff reports an answer saying the server has chunked uploads
// (JettySpeed sessions) turned off.
func IsJettySpeedOff(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == protocol.CodeJettySpeedOff
}

// errStreamNoSessions explains why a stream cannot be uploaded.
func errStreamNoSessions(err error) error {
	return fmt.Errorf("%w; a stream needs chunked uploads: save it to a file and upload the file (it then goes in one request)", err)
}

// uploadWholeInstead sends f whole after the server refused a session
// (refusal), with a warning.
func (u *uploader) uploadWholeInstead(ctx context.Context, f fileUpload, refusal error) (*Result, error) {
	u.hub.warn(fmt.Errorf("the server has chunked uploads (JettySpeed) turned off: sending %s in one request, without resume", f.name))
	if f.drop != nil {
		f.drop() // a journal of the refused session resumes nothing
	}
	res, err := u.uploadWhole(ctx, f.r, f.size, f.name)
	if err != nil && IsJettySpeedOff(err) {
		err = refusal
	}
	return res, err
}

// uploadWhole hashes size bytes of r, then sends them in one request
// with their SHA-256, retrying as uploadSmall does.
func (u *uploader) uploadWhole(ctx context.Context, r io.ReaderAt, size int64, name string) (*Result, error) {
	res := &Result{ChunksTotal: 1, Workers: 1, Method: MethodWhole}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		n := min(int64(len(buf)), size-off)
		if err := readFull(r, buf[:n], off); err != nil {
			return res, fmt.Errorf("read %s: %w", name, err)
		}
		h.Write(buf[:n])
		off += n
		u.hub.plan(off, size)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	return u.sendOneRequest(ctx, res, size, sum, name, func() (protocol.Asset, bool, error) {
		return u.postWhole(ctx, r, size, sum, name)
	})
}

// postWhole makes one attempt. Its deadline is the chunk timeout plus
// the time the body takes at 256 KiB/s: a guard against a hung server,
// not a speed requirement.
func (u *uploader) postWhole(ctx context.Context, r io.ReaderAt, size int64, sum, name string) (protocol.Asset, bool, error) {
	d := u.chunkTimeoutFor(size) + time.Duration(size/(256<<10))*time.Second
	actx, cancel := context.WithTimeout(ctx, d)
	var br *bodyReader
	asset, dedup, err := u.doPost(actx, io.NewSectionReader(r, 0, size), size, sum, name, &br)
	cancel()
	if br != nil {
		waitReleased(ctx, br)
		br.flush()
	}
	return asset, dedup, err
}
