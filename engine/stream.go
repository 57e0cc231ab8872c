package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/jettythunder/jetty/protocol"
	"golang.org/x/sync/errgroup"
)

// emptySHA256 is the SHA-256 of no bytes.
var emptySHA256 = func() string { s := sha256.Sum256(nil); return hex.EncodeToString(s[:]) }()

// UploadStream uploads r, a stream of unknown length (a pipe, stdin), as
// name. It opens a stream session (protocol.md, "Streams of unknown
// length"), reads blocks of the chunk size in order into pooled buffers,
// hashes the whole stream as it reads, and hands each block to the worker
// pool, which hashes and PUTs it. At most workers+2 blocks are in memory
// (workers sending, one queued, one being read). The manifest is built as
// the blocks arrive and sent with the completion. A stream cannot resume.
//
// When ctx ends, UploadStream returns at once; a read blocked in r
// finishes in the background.
func UploadStream(ctx context.Context, c *Client, r io.Reader, name string, opts Options) (*Result, error) {
	u := newUploader(c, opts)
	if opts.Name != "" {
		name = opts.Name
	}
	res, err := u.uploadStream(ctx, r, name)
	return u.finish(res, err)
}

type streamJob struct {
	index int
	buf   *[]byte
	n     int64
}

func (u *uploader) uploadStream(ctx context.Context, r io.Reader, name string) (*Result, error) {
	res := &Result{Method: MethodStream}
	cs := u.opts.ChunkSize
	if cs == 0 {
		cs = protocol.DefaultChunkSize
	}
	if cs < protocol.MinChunkSize || cs > protocol.MaxChunkSize {
		return res, fmt.Errorf("chunk size %d is outside %d..%d bytes (5 MiB..512 MiB)", cs, protocol.MinChunkSize, protocol.MaxChunkSize)
	}
	resp, err := u.open(ctx, protocol.OpenRequest{Stream: &protocol.StreamSpec{Name: name, ChunkSize: cs}})
	if IsJettySpeedOff(err) {
		return res, errStreamNoSessions(err)
	}
	if err != nil {
		return res, err
	}
	if resp.Deduplicated {
		res.Asset, res.Deduplicated, res.DedupAt = *resp.Asset, true, DedupAtOpen
		return res, nil
	}
	s := resp.Session
	res.SessionID = s.ID
	u.begin(ctx, s, cs, true)
	res.Workers = u.workers
	u.hub.start(-1, 0, 0, 0, u.workers)

	m := &protocol.Manifest{Version: protocol.ManifestVersion, Name: name, ChunkSize: cs}
	var mu sync.Mutex // guards m.Chunks: the reader appends, workers set hashes

	g, gctx := errgroup.WithContext(ctx)
	slots := make(chan struct{}, u.workers+2) // buffers in memory
	jobs := make(chan streamJob, 1)

	g.Go(func() error { // the reader
		defer close(jobs)
		whole := sha256.New()
		var off int64
		for i := 0; ; i++ {
			select {
			case slots <- struct{}{}:
			case <-gctx.Done():
				return gctx.Err()
			}
			bp := getBuf(cs)
			n, err := io.ReadFull(r, (*bp)[:cs])
			last := false
			switch {
			case err == io.EOF: // nothing more
				putBuf(bp)
				<-slots
				mu.Lock()
				if i == 0 { // an empty stream is one empty chunk, never sent
					m.Chunks = append(m.Chunks, protocol.Chunk{Index: 0, Offset: 0, Size: 0, SHA256: emptySHA256})
					u.hub.grow(0, 1)
				}
				m.Size, m.SHA256 = off, hex.EncodeToString(whole.Sum(nil))
				mu.Unlock()
				return nil
			case err == io.ErrUnexpectedEOF:
				last = true
			case err != nil:
				putBuf(bp)
				<-slots
				return fmt.Errorf("read %s: %w", name, err)
			}
			if i >= protocol.MaxChunks {
				putBuf(bp)
				<-slots
				return fmt.Errorf("%s is longer than %d chunks of %d bytes: give a larger chunk size", name, protocol.MaxChunks, cs)
			}
			whole.Write((*bp)[:n])
			mu.Lock()
			m.Chunks = append(m.Chunks, protocol.Chunk{Index: i, Offset: off, Size: int64(n)})
			mu.Unlock()
			u.hub.grow(int64(n), 1)
			off += int64(n)
			select {
			case jobs <- streamJob{index: i, buf: bp, n: int64(n)}:
			case <-gctx.Done():
				putBuf(bp)
				return gctx.Err()
			}
			if last {
				mu.Lock()
				m.Size, m.SHA256 = off, hex.EncodeToString(whole.Sum(nil))
				mu.Unlock()
				return nil
			}
		}
	})
	// The same routes as a file's, except direct ones (checkRoutes): each
	// worker is bound to a route and all take blocks from jobs. A block
	// cannot be read again, so a block that failed on a route is not put
	// back: its worker sends it at once through another route that is up
	// (sendChunk with no queue), and memory stays workers+2 blocks. Routes
	// that join while the stream runs take their share of the workers
	// (router.crew); the pool keeps its size (limit u.workers): the
	// buffers in memory were counted for it.
	u.rt.crew(u.workers, u.workers, g.Go, func(w *worker) error {
		for j := range jobs {
			data := (*j.buf)[:j.n]
			h := sha256.Sum256(data)
			sum := hex.EncodeToString(h[:])
			mu.Lock()
			m.Chunks[j.index].SHA256 = sum
			mu.Unlock()
			reusable := true
			var err error
			if gctx.Err() == nil {
				st := chunkTry{last: -1}
				_, reusable, err = u.sendChunk(gctx, w, nil, j.index, sum, memPayload(data), &st)
			} else {
				err = gctx.Err()
			}
			if reusable {
				putBuf(j.buf)
			}
			<-slots
			if err != nil {
				if errors.Is(err, context.Canceled) && ctx.Err() == nil {
					return err
				}
				return fmt.Errorf("chunk %d: %w", j.index, err)
			}
		}
		return nil
	}, nil)

	// A read blocked on r cannot be interrupted: when ctx ends, return
	// without waiting for it.
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if err != nil {
		return res, err
	}
	res.ChunksTotal = len(m.Chunks)
	u.hub.setTotal(m.Size)
	if err := m.Validate(); err != nil {
		return res, fmt.Errorf("stream manifest: %w", err)
	}
	cr, err := u.complete(ctx, m)
	if err != nil {
		if IsCode(err, protocol.CodeChunksMissing) {
			return res, fmt.Errorf("complete upload: the server lost chunks of the stream, which cannot be read again; upload it again: %w", err)
		}
		return res, fmt.Errorf("complete upload: %w", err)
	}
	res.Asset, res.Deduplicated = cr.Asset, cr.Deduplicated
	if cr.Deduplicated {
		res.DedupAt = DedupAtComplete
	}
	return res, nil
}
