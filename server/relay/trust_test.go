package relay

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server/app"
	"github.com/jettythunder/jetty/server/blob/s3blob"
)

// bothModes runs fn against a relay forwarding to an origin that keeps
// files, and a relay writing parts to S3 itself.
func bothModes(t *testing.T, mod func(*Config), fn func(t *testing.T, o *origin, r *Relay)) {
	t.Run("relay", func(t *testing.T) {
		o := startOrigin(t, app.Config{})
		fn(t, o, newRelay(t, o, "edge_fwd", mod))
	})
	t.Run("s3", func(t *testing.T) {
		m := testenv.MinIO(t)
		s3cfg := &s3blob.Config{Endpoint: m.Endpoint, Region: m.Region, AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, Bucket: m.Bucket}
		o := startOrigin(t, app.Config{S3: s3cfg})
		fn(t, o, newRelay(t, o, "edge_s3", func(c *Config) {
			c.S3 = s3cfg
			if mod != nil {
				mod(c)
			}
		}))
	})
}

// TestRelayStreamInsideReservation: a relay takes a stream session's
// chunks only inside the session's reservation, as the origin does;
// before, it checked only size <= chunk_size and index <= 9,999, and in
// s3 mode wrote whatever came straight to storage.
func TestRelayStreamInsideReservation(t *testing.T) {
	bothModes(t, nil, func(t *testing.T, o *origin, r *Relay) {
		base := serve(t, r)
		ctx := context.Background()
		acct, err := o.app.Store().AccountByUserID(ctx, "usr_relay")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.app.Store().Reserve(ctx, acct.ID, acct.StorageQuotaBytes()-12<<20, time.Hour); err != nil {
			t.Fatal(err)
		}
		resp, err := o.c.OpenSession(ctx, protocol.OpenRequest{Stream: &protocol.StreamSpec{Name: "s.tar", ChunkSize: 5 << 20}})
		if err != nil || resp.Session == nil {
			t.Fatalf("open stream: %v", err)
		}
		s := resp.Session
		data, _ := io.ReadAll(testenv.NewRandReader(5, 12<<20))
		five, one := data[:5<<20], data[:1]
		for _, c := range []struct {
			what  string
			index int
			body  []byte
			want  answer
		}{
			{"chunk 0", 0, five, answer{200, ""}},
			{"chunk 1", 1, data[5<<20 : 10<<20], answer{200, ""}},
			{"a full chunk 2 ends past the reservation", 2, five, answer{413, "too_large"}},
			{"chunk 3 starts past it", 3, one, answer{413, "too_large"}},
			{"the last index", 9999, one, answer{413, "too_large"}},
			{"chunk 2 inside it", 2, data[10<<20:], answer{200, ""}},
		} {
			if got := put(t, base, s.ID, c.index, s.UploadToken, hashOf(c.body), c.body, int64(len(c.body))); got != c.want {
				t.Fatalf("%s: %+v, want %+v", c.what, got, c.want)
			}
		}
		if h := held(t, o, s.ID); len(h) != 3 {
			t.Fatalf("held %v, want chunks 0, 1, 2", h)
		}
	})
}

// TestRelaySuspendedAccount: a suspended account's chunks are refused by
// relays too: at once for a session the relay has not looked up yet, and
// within the relay's session cache for one it has.
func TestRelaySuspendedAccount(t *testing.T) {
	const cache = 300 * time.Millisecond
	bothModes(t, func(c *Config) { c.SessionCache = cache }, func(t *testing.T, o *origin, r *Relay) {
		base := serve(t, r)
		data, _ := io.ReadAll(testenv.NewRandReader(6, 11<<20))
		s, m := openSession(t, o, data)
		c0, c1 := data[:5<<20], data[5<<20:10<<20]
		if got := put(t, base, s.ID, 0, s.UploadToken, m.Chunks[0].SHA256, c0, int64(len(c0))); got.status != 200 {
			t.Fatalf("chunk 0: %+v", got)
		}
		other, om := openSession(t, o, data[:6<<20]) // not looked up by the relay yet
		suspend(t, o, "suspend")
		if got := put(t, base, other.ID, 0, other.UploadToken, om.Chunks[0].SHA256, c0, int64(len(c0))); got != (answer{403, "account_suspended"}) {
			t.Fatalf("first chunk of a session after suspension: %+v, want 403 account_suspended", got)
		}
		time.Sleep(cache + 100*time.Millisecond)
		if got := put(t, base, s.ID, 1, s.UploadToken, m.Chunks[1].SHA256, c1, int64(len(c1))); got != (answer{403, "account_suspended"}) {
			t.Fatalf("chunk after suspension and the cache: %+v, want 403 account_suspended", got)
		}
		suspend(t, o, "reactivate") // the status call needs a usable account
		if h := held(t, o, s.ID); len(h) != 1 {
			t.Fatalf("held %v, want [0]", h)
		}
	})
}

// suspend calls the partner API (suspend, reactivate, delete) for the
// test account.
func suspend(t *testing.T, o *origin, action string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, o.url+"/api/agentcache/"+action, strings.NewReader(`{"agentcache_user_id":"usr_relay"}`))
	req.Header.Set("Authorization", "Bearer "+webhook)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("%s: %d", action, res.StatusCode)
	}
}
