package api_test

import (
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
)

// TestNoisyAccountDoesNotStarveAnother: one account bursting far past its
// limit gets 429s with Retry-After, while a second account's requests in
// the same moments all succeed. B's latency with and without the noise is
// logged as a figure (never asserted: the machine is shared).
func TestNoisyAccountDoesNotStarveAnother(t *testing.T) {
	each(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		noisyKey, noisySecret := e.provision("usr_noisy", "free") // 10 per minute
		quietKey, quietSecret := e.provision("usr_quiet", "pro")  // 300 per minute

		quiet := func(n int) []time.Duration {
			var ds []time.Duration
			for i := 0; i < n; i++ {
				start := time.Now()
				r := e.do("GET", "/api/agentcache/quota", "", userHeaders(quietKey, quietSecret))
				ds = append(ds, time.Since(start))
				if r.status != 200 {
					t.Errorf("quiet account, request %d during the burst: %d %s", i, r.status, r.raw)
				}
			}
			return ds
		}
		before := quiet(20)

		stop := make(chan struct{})
		var ok, limited, other atomic.Int64
		var badRetry atomic.Value
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					req, _ := http.NewRequest("GET", e.url+"/api/agentcache/quota", nil)
					req.Header.Set("Authorization", "Bearer "+noisyKey)
					req.Header.Set("X-API-Secret", noisySecret)
					res, err := http.DefaultClient.Do(req)
					if err != nil {
						other.Add(1)
						continue
					}
					res.Body.Close()
					switch res.StatusCode {
					case 200:
						ok.Add(1)
					case 429:
						limited.Add(1)
						if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
							badRetry.Store(res.Header.Get("Retry-After"))
						}
					default:
						other.Add(1)
					}
				}
			}()
		}
		time.Sleep(100 * time.Millisecond)
		during := quiet(20)
		close(stop)
		wg.Wait()

		if ok.Load() > 10 {
			t.Errorf("the free account got %d requests through a limit of 10 per minute", ok.Load())
		}
		if limited.Load() < 10 || other.Load() != 0 {
			t.Errorf("burst: %d ok, %d limited, %d other answers", ok.Load(), limited.Load(), other.Load())
		}
		if v := badRetry.Load(); v != nil {
			t.Errorf("a 429 carried Retry-After %q", v)
		}
		wantError(t, e.do("GET", "/api/agentcache/quota", "", userHeaders(noisyKey, noisySecret)), 429, server.ERateLimited)
		t.Logf("burst: %d requests from the noisy account (%d ok, %d limited); quiet account p50 %v before, %v during",
			ok.Load()+limited.Load(), ok.Load(), limited.Load(), median(before), median(during))
	})
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
