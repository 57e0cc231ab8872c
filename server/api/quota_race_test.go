package api_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/api"
)

// allowAll is a limiter that never limits.
type allowAll struct{}

func (allowAll) Allow(context.Context, string, int, time.Duration) (server.LimitResult, error) {
	return server.LimitResult{Allowed: true, Limit: 1 << 30, Remaining: 1 << 30}, nil
}

// fakeManifest declares size bytes in 5 MiB chunks with made-up hashes:
// opening a session reserves the bytes before any of them is sent.
func fakeManifest(name string, size int64, seed int) tmanifest {
	m := tmanifest{Version: 1, Name: name, Size: size, ChunkSize: 5 * mib, SHA256: fmt.Sprintf("%064x", seed)}
	for off, i := int64(0), 0; off < size; i++ {
		n := min(5*mib, size-off)
		m.Chunks = append(m.Chunks, tchunk{Index: i, Offset: off, Size: n, SHA256: fmt.Sprintf("%060x%04x", seed, i)})
		off += n
	}
	return m
}

// TestQuotaRaces: on both databases, 60 uploads of 50 MiB opened at once
// against a 2 GiB quota get exactly 40 reservations; aborts racing new
// opens never push the reservation past the quota or below zero; when all
// are aborted (some twice) nothing stays reserved.
func TestQuotaRaces(t *testing.T) {
	// The tier's 60 requests a minute is not what this test is about.
	eachStorageWith(t, func(c *api.Config) { c.Limiter = allowAll{} }, func(t *testing.T, e *env) {
		key, secret := e.provision("usr_race", "starter") // 2 GiB, 50 MiB per file
		const size = 50 * mib
		quota := e.account("usr_race").StorageQuotaBytes()
		fits := int(quota / size)

		open := func(seeds []int) (ids []string, refused int) {
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, s := range seeds {
				wg.Add(1)
				go func(s int) {
					defer wg.Done()
					o := e.open(key, secret, fakeManifest(fmt.Sprintf("f%d.bin", s), size, s))
					mu.Lock()
					defer mu.Unlock()
					switch {
					case o.Session != nil:
						ids = append(ids, o.Session.ID)
					case o.status == 413 && o.Code == server.EQuotaExceeded:
						refused++
					default:
						t.Errorf("open %d: %d %s", s, o.status, o.raw)
					}
				}(s)
			}
			wg.Wait()
			return ids, refused
		}
		check := func(when string, open int) {
			t.Helper()
			a := e.account("usr_race")
			if a.StorageReservedBytes > quota || a.StorageReservedBytes < 0 || a.StorageUsedBytes != 0 {
				t.Fatalf("%s: reserved %d of %d (used %d)", when, a.StorageReservedBytes, quota, a.StorageUsedBytes)
			}
			if open >= 0 && a.StorageReservedBytes != int64(open)*size {
				t.Fatalf("%s: reserved %d for %d open sessions of %d", when, a.StorageReservedBytes, open, size)
			}
		}

		seeds := make([]int, 60)
		for i := range seeds {
			seeds[i] = i + 1
		}
		ids, refused := open(seeds)
		if len(ids) != fits || refused != 60-fits {
			t.Fatalf("60 concurrent opens: %d reserved, %d refused; want %d and %d", len(ids), refused, fits, 60-fits)
		}
		check("after the burst", len(ids))

		// Abort half while 30 new uploads race for the freed room.
		var wg sync.WaitGroup
		aborted := ids[:len(ids)/2]
		for _, id := range aborted {
			wg.Add(1)
			go func(id string) {
				defer wg.Done()
				if r := e.jsonCall("DELETE", "/api/jetty/sessions/"+id, key, secret, nil); r.status/100 != 2 {
					t.Errorf("abort %s: %d %s", id, r.status, r.raw)
				}
			}(id)
		}
		more := make([]int, 30)
		for i := range more {
			more[i] = 100 + i
		}
		var newIDs []string
		wg.Add(1)
		go func() { defer wg.Done(); newIDs, _ = open(more) }()
		wg.Wait()
		still := append(append([]string(nil), ids[len(ids)/2:]...), newIDs...)
		if len(still) > fits {
			t.Fatalf("%d sessions hold a reservation, only %d fit", len(still), fits)
		}
		check("after aborts raced opens", len(still))

		// Abort everything, the first batch a second time, all at once.
		for _, id := range append(still, aborted...) {
			wg.Add(1)
			go func(id string) {
				defer wg.Done()
				r := e.jsonCall("DELETE", "/api/jetty/sessions/"+id, key, secret, nil)
				if r.status/100 != 2 {
					t.Errorf("abort %s: %d %s", id, r.status, r.raw)
				}
			}(id)
		}
		wg.Wait()
		check("after aborting all", 0)
	})
}
