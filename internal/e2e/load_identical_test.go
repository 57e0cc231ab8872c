package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/protocol"
)

// TestLoadConcurrentIdentical: several uploads of one content by one
// account at once, started a little apart so that each finds the others'
// session at another stage (open, chunks arriving, being completed,
// complete), all succeed with the right asset, on both deployments, and
// no answer is a 5xx; the account stores the content once and holds
// nothing reserved. (Before the fix, a chunk arriving while another
// upload completed the shared session failed its upload with 409
// conflict, or got a 500 when the store refused the part of an upload
// completed meanwhile.)
func TestLoadConcurrentIdentical(t *testing.T) {
	const (
		copies = 6
		rounds = 2
		size   = 23<<20 + 77 // 5 chunks of 5 MiB
	)
	deployments(t, func(t *testing.T, s *server) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		rec := newRecorder()
		c := &engine.Client{BaseURL: s.url, APIKey: s.key, APISecret: s.secret,
			HTTP: &http.Client{Transport: &recordingTransport{base: loadTransport(), rec: rec}}}
		assets := map[string]string{} // id → SHA-256
		var used int64
		for round := range rounds {
			g := seededContent{seed: 1<<41 | uint64(round), n: size}
			sum := g.sha256Hex()
			var wg sync.WaitGroup
			res := make([]*engine.Result, copies)
			errs := make([]error, copies)
			for k := range copies {
				wg.Go(func() {
					time.Sleep(time.Duration(k) * 150 * time.Millisecond)
					// One name: the same file, so the copies share a
					// session (the same content under another name is
					// another file, with a session and an asset of its own).
					res[k], errs[k] = engine.UploadReader(ctx, c, g, g.n, fmt.Sprintf("same-%d.bin", round),
						engine.Options{ChunkSize: protocol.MinChunkSize, Workers: 2})
				})
			}
			wg.Wait()
			for k := range copies {
				if errs[k] != nil {
					t.Errorf("round %d copy %d: %v", round, k, errs[k])
					continue
				}
				if a := res[k].Asset; a.Hash != sum || a.Size != size {
					t.Errorf("round %d copy %d: asset %+v", round, k, a)
				}
				assets[res[k].Asset.ID] = sum
			}
			used += size
		}
		if n := rec.count("", func(st int) bool { return st >= 500 }); n > 0 {
			t.Errorf("%d answers were 5xx (%s)", n, rec.row("chunk PUTs", classChunk).other)
		}
		var q quotaAnswer
		if err := c.Call(ctx, http.MethodGet, "/api/agentcache/quota", nil, &q); err != nil {
			t.Fatal(err)
		}
		if q.Storage.UsedBytes != used || q.Storage.ReservedBytes != 0 {
			t.Errorf("used %d reserved %d, want %d and 0", q.Storage.UsedBytes, q.Storage.ReservedBytes, used)
		}
		var page listAnswer
		if err := c.Call(ctx, http.MethodGet, "/api/storage/assets?limit=1000", nil, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Assets) != len(assets) {
			t.Errorf("%d assets listed, the uploads returned %d", len(page.Assets), len(assets))
		}
		for id, sum := range assets {
			if got, n := s.download(t, id); got != sum || n != size {
				t.Errorf("asset %s downloads as %d bytes with SHA-256 %s, want %d and %s", id, n, got, size, sum)
			}
		}
	})
}
