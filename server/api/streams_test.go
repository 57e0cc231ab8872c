package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/protocol/edgeauth"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/api"
	"github.com/jettythunder/jetty/server/blob/fsblob"
	"github.com/jettythunder/jetty/server/kvtest"
	"github.com/jettythunder/jetty/server/memory"
	"github.com/jettythunder/jetty/server/redis"
	"github.com/jettythunder/jetty/server/relay"
	"github.com/jettythunder/jetty/server/uploadtoken"
)

// sharedStreams replaces the shared limiter of
// TestStreamCeilingAcrossInstances/shared with another one: "memory" (the
// per-process one) shows the test failing, as it must:
//
//	go test -count=1 -run 'TestStreamCeilingAcrossInstances/shared' ./server/api/ -args -shared-streams=memory
var sharedStreams = flag.String("shared-streams", "redis", `the limiter TestStreamCeilingAcrossInstances/shared gives both instances: "redis" (shared, as in production) or "memory" (per process: the test then fails)`)

// slotEvents reports what a Semaphore answered, so that tests know when a
// chunk handler holds its slot (or was refused one) without waiting on
// time.
type slotEvents struct {
	server.Semaphore
	acquired chan bool     // each Acquire's answer
	released chan struct{} // each Release
	renewed  chan bool     // Renew's answers while a test waits for one
}

func newSlotEvents() *slotEvents {
	return &slotEvents{acquired: make(chan bool, 64), released: make(chan struct{}, 64), renewed: make(chan bool)}
}

// watch wraps s, reporting on e's channels (shared by every instance).
func (e *slotEvents) watch(s server.Semaphore) server.Semaphore {
	return &slotEvents{Semaphore: s, acquired: e.acquired, released: e.released, renewed: e.renewed}
}

func (e *slotEvents) Renew(ctx context.Context, key, id string, lease time.Duration) (bool, error) {
	ok, err := e.Semaphore.Renew(ctx, key, id, lease)
	if err == nil {
		select {
		case e.renewed <- ok:
		default: // nobody listens: renewals go on
		}
	}
	return ok, err
}

func (e *slotEvents) Acquire(ctx context.Context, key string, limit int, lease time.Duration) (string, bool, error) {
	id, ok, err := e.Semaphore.Acquire(ctx, key, limit, lease)
	if err == nil {
		e.acquired <- ok
	}
	return id, ok, err
}

func (e *slotEvents) Release(ctx context.Context, key, id string) error {
	err := e.Semaphore.Release(ctx, key, id)
	e.released <- struct{}{}
	return err
}

func (e *slotEvents) next(t *testing.T) bool {
	t.Helper()
	select {
	case ok := <-e.acquired:
		return ok
	case <-time.After(time.Minute):
		t.Fatal("no chunk handler asked for a slot within a minute")
		return false
	}
}

func (e *slotEvents) waitRelease(t *testing.T) {
	t.Helper()
	select {
	case <-e.released:
	case <-time.After(time.Minute):
		t.Fatal("no slot released within a minute")
	}
}

// ceilingRig is an upload session on two server instances sharing
// PostgreSQL and object storage, with a token whose ceiling is N.
type ceilingRig struct {
	t     *testing.T
	envs  [2]*env
	id    string
	token string
	m     tmanifest
	data  []byte
}

const ceilingN = 3

// tailChunk is the index of the rig's last chunk, of 1 KiB.
const tailChunk = 2*ceilingN + 2

func newCeilingRig(t *testing.T, streams func(t *testing.T) [2]server.Semaphore, lease time.Duration, edit ...func(*api.Config)) *ceilingRig {
	b := backends()[1]
	st := b.store(t)
	blobs := minioBlobs(t)
	sems := streams(t)
	r := &ceilingRig{t: t}
	for i := range r.envs {
		r.envs[i] = newEnvConfig(t, st, b.limit(t), blobs, nil, func(c *api.Config) {
			c.Streams = sems[i]
			c.StreamLease = lease
			for _, f := range edit {
				f(c)
			}
		})
	}
	user := fmt.Sprintf("usr_ceiling_%d", time.Now().UnixNano())
	key, secret := r.envs[0].provision(user, "pro")
	// Chunks of the smallest size a manifest allows, enough for 2N+2
	// PUTs, and a small last one (tailChunk).
	r.data = randBytes(21, (2*ceilingN+2)*5*mib+1024)
	r.m = plan("ceiling.bin", r.data, 5*mib)
	o := r.envs[0].open(key, secret, r.m)
	if o.status != 201 {
		t.Fatalf("open: %d %s", o.status, o.raw)
	}
	r.id = o.Session.ID
	signer, err := uploadtoken.NewSigner([]byte("test token secret"))
	if err != nil {
		t.Fatal(err)
	}
	// The ceiling travels in the token (the tier's max workers); this
	// one's is N, so that N+1 and 2N stay small.
	r.token = signer.Sign(uploadtoken.Claims{SessionID: r.id, AccountID: r.envs[0].account(user).ID, MaxWorkers: ceilingN, Expires: time.Now().Add(time.Hour).Unix()})
	return r
}

// put is a chunk PUT whose body the test sends when it likes.
type put struct {
	pw    *io.PipeWriter
	rest  []byte
	reply chan putReply
}

type putReply struct {
	status     int
	code       string
	retryAfter string
	err        error
}

// start begins a PUT of chunk i on instance inst; its body is held until
// finish.
func (r *ceilingRig) start(inst, i int) *put {
	return r.startAt(r.envs[inst].url, i)
}

// startAt begins a PUT of chunk i at base (an instance or a relay).
func (r *ceilingRig) startAt(base string, i int) *put {
	c := r.m.Chunks[i]
	pr, pw := io.Pipe()
	req, err := http.NewRequest("PUT", fmt.Sprintf("%s/api/jetty/sessions/%s/chunks/%d", base, r.id, i), pr)
	if err != nil {
		r.t.Fatal(err)
	}
	req.ContentLength = c.Size
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("X-Chunk-SHA256", c.SHA256)
	p := &put{pw: pw, rest: r.data[c.Offset : c.Offset+c.Size], reply: make(chan putReply, 1)}
	r.t.Cleanup(func() { pw.CloseWithError(io.ErrClosedPipe) })
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			p.reply <- putReply{err: err}
			return
		}
		defer res.Body.Close()
		var body struct{ Code string }
		json.NewDecoder(res.Body).Decode(&body)
		p.reply <- putReply{status: res.StatusCode, code: body.Code, retryAfter: res.Header.Get("Retry-After")}
	}()
	return p
}

// finish sends the rest of the body and returns the answer.
func (p *put) finish(t *testing.T) putReply {
	t.Helper()
	go func() {
		p.pw.Write(p.rest)
		p.pw.Close()
	}()
	return p.wait(t)
}

func (p *put) wait(t *testing.T) putReply {
	t.Helper()
	select {
	case r := <-p.reply:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r
	case <-time.After(time.Minute):
		t.Fatal("no answer to a chunk PUT within a minute")
		return putReply{}
	}
}

// refused checks that p was refused a slot, and answered so.
func (e *slotEvents) refused(t *testing.T, what string, p *put) {
	t.Helper()
	if e.next(t) {
		t.Fatalf("%s: admitted over the ceiling", what)
	}
	wantTooMany(t, what, p.wait(t))
}

// handOver finishes held, waits for its slot to be released, then sends
// chunk i whole at base: it must be stored.
func (r *ceilingRig) handOver(t *testing.T, e *slotEvents, held *put, base string, i int) {
	t.Helper()
	if got := held.finish(t); got.status != 200 {
		t.Fatalf("the held chunk: %d %s", got.status, got.code)
	}
	e.waitRelease(t)
	if got := r.startAt(base, i).finish(t); got.status != 200 {
		t.Fatalf("chunk %d once a slot was free: %d %s", i, got.status, got.code)
	}
}

func wantTooMany(t *testing.T, what string, r putReply) {
	t.Helper()
	if r.status != http.StatusTooManyRequests || r.code != server.ETooManyStreams || r.retryAfter == "" {
		t.Fatalf("%s: %d %q (Retry-After %q), want 429 %s with a Retry-After", what, r.status, r.code, r.retryAfter, server.ETooManyStreams)
	}
}

// TestStreamCeilingAcrossInstances: a session whose ceiling is N holds N
// chunk PUTs open across two instances (alternating); one more, on either
// instance, is refused 429 too_many_streams; when one finishes, a new one
// is admitted. With the per-process limiter the same two instances let
// 2N through: the case "per-process" asserts that failure mode, and
// -shared-streams=memory (see sharedStreams) makes "shared" fail.
func TestStreamCeilingAcrossInstances(t *testing.T) {
	for _, tc := range []struct {
		name    string
		streams func(t *testing.T) [2]server.Semaphore
		want    int // PUTs held open at once before the first refusal
		// freed is the instance a slot freed on instance 1 is used on:
		// any instance when the slots are shared; with per-process
		// ones, only instance 1's own.
		freed int
	}{
		{"shared", func(t *testing.T) [2]server.Semaphore {
			if *sharedStreams == "memory" {
				return [2]server.Semaphore{memory.NewSemaphore(), memory.NewSemaphore()}
			}
			c, prefix := testenv.Redis(t)
			// Two Semaphores, as two processes have, on one Redis.
			return [2]server.Semaphore{redis.NewSemaphore(c, prefix+"streams:"), redis.NewSemaphore(c, prefix+"streams:")}
		}, ceilingN, 1},
		{"per-process", func(t *testing.T) [2]server.Semaphore {
			return [2]server.Semaphore{memory.NewSemaphore(), memory.NewSemaphore()}
		}, 2 * ceilingN, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := newSlotEvents()
			r := newCeilingRig(t, func(t *testing.T) [2]server.Semaphore {
				s := tc.streams(t)
				return [2]server.Semaphore{ev.watch(s[0]), ev.watch(s[1])}
			}, time.Hour) // no renewal runs within the test

			// Hold PUTs open, alternating instances, each one inside its
			// handler with its slot, until one is refused.
			var held []*put
			var refused *put
			for i := 0; refused == nil; i++ {
				if i > 2*ceilingN {
					t.Fatalf("%d chunk PUTs held open at once on a session whose ceiling is %d", len(held), ceilingN)
				}
				p := r.start(i%2, i)
				if ev.next(t) {
					held = append(held, p)
				} else {
					refused = p
				}
			}
			if len(held) != tc.want {
				t.Fatalf("%d chunk PUTs held open at once across two instances before a refusal, want %d (the ceiling is %d)", len(held), tc.want, ceilingN)
			}
			wantTooMany(t, fmt.Sprintf("PUT %d", len(held)+1), refused.wait(t))
			next := len(held) + 1
			// Either instance refuses.
			for inst := range 2 {
				ev.refused(t, fmt.Sprintf("instance %d over the ceiling", inst+1), r.start(inst, next))
			}

			// One finishes (on instance 1): a new one is admitted.
			r.handOver(t, ev, held[0], r.envs[tc.freed].url, next)
			if !ev.next(t) {
				t.Fatal("no slot was taken for the chunk sent after one of the held ones finished")
			}
			for i, p := range held[1:] {
				if got := p.finish(t); got.status != 200 {
					t.Fatalf("held PUT %d: %d %s", i+2, got.status, got.code)
				}
			}
		})
	}
}

// TestStreamSlotsOfACrashedInstance: the slots an instance held when it
// died (taken, never released) keep the ceiling held until their lease
// runs out, and not longer: then the live instance admits chunks again.
func TestStreamSlotsOfACrashedInstance(t *testing.T) {
	c, prefix := testenv.Redis(t)
	clk := kvtest.NewClock()
	const lease = 10 * time.Minute
	ev := newSlotEvents()
	r := newCeilingRig(t, func(t *testing.T) [2]server.Semaphore {
		s := redis.NewSemaphore(c, prefix+"streams:", redis.WithClock(clk.Now))
		return [2]server.Semaphore{ev.watch(s), ev.watch(s)}
	}, lease, func(c *api.Config) { c.MetricsPublic = true })
	// The dead instance: N chunks in flight, then SIGKILL (nothing runs
	// after Acquire: no Release, no renewal).
	dead := redis.NewSemaphore(c, prefix+"streams:", redis.WithClock(clk.Now))
	for i := range ceilingN {
		if _, ok, err := dead.Acquire(context.Background(), r.id, ceilingN, lease); err != nil || !ok {
			t.Fatalf("dead instance's slot %d: %v, %v", i+1, ok, err)
		}
	}
	chunk := func(inst, i int) putReply {
		t.Helper()
		c := r.m.Chunks[i]
		at := &session{ChunkURL: fmt.Sprintf("%s/api/jetty/sessions/%s/chunks/{index}", r.envs[inst].url, r.id)}
		st, code := putChunk(t, at, r.token, i, c.SHA256, r.data[c.Offset:c.Offset+c.Size])
		return putReply{status: st, code: code, retryAfter: "(not read)"}
	}
	wantTooMany(t, "a chunk while the dead instance's slots live", chunk(0, 0))
	clk.Advance(lease - time.Millisecond)
	wantTooMany(t, "a chunk 1 ms before their lease ends", chunk(1, 0))
	clk.Advance(time.Millisecond)
	if got := chunk(0, 0); got.status != 200 {
		t.Fatalf("a chunk once the dead instance's slots lapsed: %d %s", got.status, got.code)
	}
	if got := chunk(1, 1); got.status != 200 {
		t.Fatalf("a second chunk: %d %s", got.status, got.code)
	}
	if m := r.envs[0].do("GET", "/metrics", "", nil); !strings.Contains(m.raw, `jetty_chunks_total{outcome="too_many_streams"} 1`+"\n") {
		t.Fatalf("instance 1 does not count its refusal:\n%s", m.raw)
	}
}

// TestStreamSlotRenewed: a chunk that streams for longer than the lease
// keeps its slot (its handler renews it every third of the lease), and
// gives it back when it ends.
func TestStreamSlotRenewed(t *testing.T) {
	c, prefix := testenv.Redis(t)
	clk := kvtest.NewClock()
	// The lease is short in real time, so that renewals tick during the
	// test; the Semaphore's clock moves only when the test moves it.
	const lease = 300 * time.Millisecond
	ev := newSlotEvents()
	r := newCeilingRig(t, func(t *testing.T) [2]server.Semaphore {
		s := redis.NewSemaphore(c, prefix+"streams:", redis.WithClock(clk.Now))
		return [2]server.Semaphore{ev.watch(s), ev.watch(s)}
	}, lease)
	// The rest of the ceiling is held elsewhere, for long.
	other := redis.NewSemaphore(c, prefix+"streams:", redis.WithClock(clk.Now))
	for i := range ceilingN - 1 {
		if _, ok, err := other.Acquire(context.Background(), r.id, ceilingN, time.Hour); err != nil || !ok {
			t.Fatalf("slot %d: %v, %v", i+1, ok, err)
		}
	}
	held := r.start(0, 0)
	if !ev.next(t) {
		t.Fatal("the chunk was refused a slot")
	}
	// Five leases go by, a quarter of a lease at a time, each followed
	// by a renewal: the slot never lapses while its chunk streams. (A
	// renewal reported read the clock after the one before was reported:
	// after the previous step's move, so less than half a lease before.)
	for i := range 20 {
		clk.Advance(lease / 4)
		select {
		case ok := <-ev.renewed:
			if !ok {
				t.Fatalf("renewal %d found the slot lapsed", i+1)
			}
		case <-time.After(time.Minute):
			t.Fatal("no renewal within a minute")
		}
	}
	ev.refused(t, "a chunk while the long one streams, five leases on", r.start(1, 1))
	r.handOver(t, ev, held, r.envs[1].url, 1)
}

// TestStreamCeilingThroughRelay: a relay that forwards chunks to the
// origin (mode relay: no S3 settings) is held to the shared ceiling, by
// the origin instance the chunk reaches; the relay passes the refusal on
// as it is.
func TestStreamCeilingThroughRelay(t *testing.T) {
	const edgeSecret = "ceiling_test_edge_secret_7b1e04c2a9d35f86e1c0"
	keys, err := edgeauth.NewKeys(edgeSecret)
	if err != nil {
		t.Fatal(err)
	}
	ev := newSlotEvents()
	r := newCeilingRig(t, func(t *testing.T) [2]server.Semaphore {
		c, prefix := testenv.Redis(t)
		return [2]server.Semaphore{ev.watch(redis.NewSemaphore(c, prefix+"streams:")), ev.watch(redis.NewSemaphore(c, prefix+"streams:"))}
	}, time.Hour, func(c *api.Config) {
		c.EdgeKeys = keys
		c.Backend = "s3"
	})
	rl, err := relay.New(context.Background(), relay.Config{Origin: r.envs[1].url, ID: "edge_ceiling", Secret: edgeSecret, Interval: 100 * time.Millisecond, DrainTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := rl.Start(ctx, ln); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); rl.Wait() })
	edge := "http://" + ln.Addr().String()

	// N-1 held on the instances, one through the relay.
	var held []*put
	for i := range ceilingN - 1 {
		held = append(held, r.start(i%2, i))
		if !ev.next(t) {
			t.Fatalf("PUT %d refused under the ceiling", i+1)
		}
	}
	viaRelay := r.startAt(edge, ceilingN-1)
	if !ev.next(t) {
		t.Fatal("the chunk through the relay was refused under the ceiling")
	}
	// The ceiling is held: through the relay and on an instance alike.
	// (The chunk through the relay is sent whole at once: a small one,
	// which the origin reads out after refusing it, so that its answer is
	// the refusal and not a connection reset.)
	got := r.startAt(edge, tailChunk).finish(t)
	if ev.next(t) {
		t.Fatal("the origin admitted a chunk over the ceiling through the relay")
	}
	wantTooMany(t, "a chunk over the ceiling through the relay", got)
	ev.refused(t, "a chunk over the ceiling on an instance", r.start(0, ceilingN))
	r.handOver(t, ev, viaRelay, edge, ceilingN)
	for i, p := range held {
		if got := p.finish(t); got.status != 200 {
			t.Fatalf("held PUT %d: %d %s", i+1, got.status, got.code)
		}
	}
}

// downSemaphore fails every call, as server/redis's does with Redis
// down (server/redis tests that).
type downSemaphore struct{}

var errRedisDown = errors.New("redis semaphore acquire: dial tcp 127.0.0.1:6379: connect: connection refused")

func (downSemaphore) Acquire(context.Context, string, int, time.Duration) (string, bool, error) {
	return "", false, errRedisDown
}
func (downSemaphore) Renew(context.Context, string, string, time.Duration) (bool, error) {
	return false, errRedisDown
}
func (downSemaphore) Release(context.Context, string, string) error { return errRedisDown }

// TestStreamCeilingRedisDown: when the ceiling's Redis fails, chunks go
// through (as with the rate limits, an outage of Redis does not take
// uploads down), logged and counted.
func TestStreamCeilingRedisDown(t *testing.T) {
	b := backends()[0]
	fs, err := fsblob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvConfig(t, b.store(t), b.limit(t), fs, nil, func(c *api.Config) {
		c.Streams = downSemaphore{}
		c.MetricsPublic = true
	})
	key, secret := e.provision("usr_ceiling_down", "pro")
	data := randBytes(22, 1024)
	m := plan("down.bin", data, 5*mib)
	o := e.open(key, secret, m)
	if o.status != 201 {
		t.Fatalf("open: %d %s", o.status, o.raw)
	}
	if st, code := putChunk(t, o.Session, o.Session.Token, 0, m.Chunks[0].SHA256, data); st != 200 {
		t.Fatalf("chunk with the ceiling's Redis down: %d %s, want 200", st, code)
	}
	if !strings.Contains(e.logs.String(), "stream ceiling unavailable") {
		t.Fatalf("no warning logged:\n%s", e.logs.String())
	}
	if r := e.do("GET", "/metrics", "", nil); !strings.Contains(r.raw, "jetty_stream_ceiling_unavailable_total 1\n") {
		t.Fatalf("metrics do not count the chunk let through:\n%s", r.raw)
	}
}
