package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/app"
	"github.com/jettythunder/jetty/server/blob/fsblob"
	"github.com/jettythunder/jetty/server/blob/s3blob"
	"github.com/jettythunder/jetty/server/sqlstore"
)

// Scenario 6 of the reliability issue: kill -9 of the client, a relay and
// the server at random points of uploads (seeded: JETTY_E2E_SEED replays
// a run). While the victim is dead nothing of the content is visible;
// every upload resumes to a byte-identical object listed once and counted
// once; an upload abandoned after a kill leaves, once the jobs have run,
// no reservation, no multipart upload or part and no temporary file.

const (
	killWorkers = 4
	killChunk   = 5 << 20
	// killBudget bounds the uploads of one deployment: no upload starts
	// after it once the first three are done.
	killBudget = 20 * time.Second
)

// killSize is a random file size of 4 to 6 chunks.
func killSize(rngIntN func(int64) int64) int64 { return 3*killChunk + 1 + rngIntN(3*killChunk-1) }

// TestKillClientRandomPoints: a client process killed at random points
// (opening the session, amid the chunks, before, during and after the
// completion), once or twice per upload, then resumed, on both
// deployments; then one upload killed and abandoned, and the jobs run.
func TestKillClientRandomPoints(t *testing.T) {
	seed := killSeed(t)
	deployments(t, func(t *testing.T, s *server) {
		rng := rngFor(seed, t.Name())
		b := backendOf(s)
		proxy := newTrapProxy(t, s.url)
		started := time.Now()
		var done []content
		var kills, sizeTotal, resumedTotal int64

		// killClient runs the client until the trap fires and kills it.
		killClient := func(env []string, kp killPoint) {
			t.Helper()
			k := newKid(t, "1", env...)
			tr := proxy.arm(kp, true, k.kill, b.assembledFunc(len(done)))
			k.start(t)
			select {
			case <-tr.fired:
				<-k.exited
			case <-k.exited:
				select {
				case <-tr.fired: // killed by the trap, which is finishing
				case <-time.After(5 * time.Second):
					t.Fatalf("the client exited (%v) before its kill at %v; stderr:\n%s", k.cmd.ProcessState, kp, k.errOut.String())
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("the kill at %v did not fire within 60s", kp)
			}
			proxy.disarm()
			kills++
		}

		for i, group := range killSchedule(rng, 6) {
			if i >= 3 && time.Since(started) > killBudget {
				t.Logf("time budget spent after %d uploads", i)
				break
			}
			size := killSize(rng.Int64N)
			path, sum := writeFile(t, byte(110+i), size)
			b.wrote(sum)
			journal := t.TempDir()
			env := clientEnv(proxy.URL, s.key, s.secret, path, journal, killWorkers, killChunk)
			if i%3 == 2 {
				// Every third upload on the manifest-first path; the
				// others pipelined (hashed and sent in one pass).
				env = append(env, "JETTY_E2E_HASH_FIRST=1")
			}
			points := []killPoint{drawPoint(rng, group, size, 150*time.Millisecond)}
			if rng.IntN(2) == 0 { // killed again while resuming
				points = append(points, killPoint{})
			}
			completed := false
			sid := ""
			for j := range points {
				if j > 0 {
					points[j] = drawPoint(rng, []string{"chunks", "complete"}[rng.IntN(2)], size-b.storedBytes(t, sum, size, sid), 150*time.Millisecond)
				}
				kp := points[j]
				before := proxy.chunkBytes.Load()
				killClient(env, kp)
				sid = journalSession(t, journal, proxy.URL, path)
				b.settle(t, sid)
				b.quiesce(t)
				t.Logf("upload %d (%.1f MiB): client killed at %v: %.1f MiB of chunks sent, %.1f MiB stored, session %s",
					i, mibOf(size), kp, mibOf(proxy.chunkBytes.Load()-before), mibOf(b.storedBytes(t, sum, size, sid)), b.session(t, sid).State)
				if completed = b.checkKilled(t, sum, size, sid, true, false, kp.completing()); completed {
					t.Logf("upload %d: the server completed it, the client never heard", i)
					break
				}
			}
			// Resume to the end.
			held := b.storedBytes(t, sum, size, sid)
			missing := size - held
			if completed {
				missing = 0
			}
			before := proxy.chunkBytes.Load()
			k := newKid(t, "1", env...)
			k.start(t)
			k.wait(t, 60*time.Second)
			if !k.cmd.ProcessState.Success() {
				t.Fatalf("resumed upload %d: %v; stderr:\n%s", i, k.cmd.ProcessState, k.errOut.String())
			}
			var res engine.Result
			if err := json.Unmarshal(k.out.Bytes(), &res); err != nil {
				t.Fatalf("resumed upload %d: result %q: %v", i, k.out.String(), err)
			}
			sent := proxy.chunkBytes.Load() - before
			if res.Asset.Hash != sum || res.Asset.Size != size {
				t.Fatalf("resumed upload %d: asset %+v, want %s (%d bytes)", i, res.Asset, sum, size)
			}
			if sent > missing {
				t.Errorf("resumed upload %d sent %d bytes of chunks, more than the %d the server was missing", i, sent, missing)
			}
			done = append(done, content{sum, size})
			b.checkCompleted(t, sum, size, res.Asset.ID, done)
			if acct := b.account(t); acct.StorageReservedBytes != 0 {
				t.Errorf("after upload %d: %d bytes still reserved", i, acct.StorageReservedBytes)
			}
			t.Logf("upload %d resumed: %.1f MiB sent for %.1f MiB missing (journal resumed: %v)", i, mibOf(sent), mibOf(missing), res.Resumed)
			sizeTotal += size
			resumedTotal += sent
		}

		// An upload killed mid-chunks and never resumed.
		size := killSize(rng.Int64N)
		path, sum := writeFile(t, 109, size)
		b.wrote(sum)
		journal := t.TempDir()
		kp := drawPoint(rng, "chunks", size, 0)
		killClient(clientEnv(proxy.URL, s.key, s.secret, path, journal, killWorkers, killChunk), kp)
		sid := journalSession(t, journal, proxy.URL, path)
		b.settle(t, sid)
		b.quiesce(t)
		b.checkKilled(t, sum, size, sid, true, false, false)
		parts := b.checkParts(t, sid, path, killChunk)
		if acct := b.account(t); acct.StorageReservedBytes != size {
			t.Fatalf("the abandoned upload holds %d bytes reserved, want %d", acct.StorageReservedBytes, size)
		}
		rep := b.runJobs(t)
		t.Logf("abandoned at %v with %d whole parts held; jobs: %+v", kp, parts, rep)
		if rep.ReservationsReleased != 1 || rep.ObjectsCollected != 1 {
			t.Errorf("jobs released %d reservations and collected %d objects, want the abandoned session's 1 and 1", rep.ReservationsReleased, rep.ObjectsCollected)
		}
		b.checkCleanup(t, done)
		for _, a := range b.apiAssets(t) {
			if h, n := b.download(t, a.ID); h != a.Hash || n != a.Size {
				t.Fatalf("after cleanup, asset %s downloads as %s (%d bytes)", a.ID, h, n)
			}
		}
		t.Logf("%d uploads (%.1f MiB) and %d client kills in %v: %.1f MiB of chunks sent in all, %.1f MiB of them by the resumed runs",
			len(done)+1, mibOf(sizeTotal+size), kills, time.Since(started).Round(time.Millisecond), mibOf(proxy.chunkBytes.Load()), mibOf(resumedTotal))
	})
}

// serverDeployment is a server configuration run in child processes, and
// the checks' own handles on its database and store.
type serverDeployment struct {
	cfg app.Config
	b   *backend
}

// serverDeployments runs fn on both deployments with the server in a
// child process.
func serverDeployments(t *testing.T, fn func(t *testing.T, d serverDeployment)) {
	t.Run("sqlite+fs", func(t *testing.T) {
		dir := t.TempDir()
		st, err := sqlstore.Open(context.Background(), filepath.Join(dir, "jetty.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fs, err := fsblob.New(filepath.Join(dir, "blobs"))
		if err != nil {
			t.Fatal(err)
		}
		fn(t, serverDeployment{cfg: app.Config{DataDir: dir}, b: &backend{store: st, blobs: fs, blobDir: fs.Dir(), userID: "usr_e2e"}})
	})
	t.Run("postgres+s3+redis", func(t *testing.T) {
		m := testenv.MinIO(t)
		pg := testenv.PostgresURL(t)
		s3c := &s3blob.Config{Endpoint: m.Endpoint, Region: m.Region, AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, Bucket: m.Bucket}
		cfg := app.Config{DataDir: t.TempDir(), DatabaseURL: pg, RedisURL: testenv.RedisURL(t), S3: s3c}
		st, err := sqlstore.Open(context.Background(), pg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		bs, err := s3blob.New(context.Background(), *s3c)
		if err != nil {
			t.Fatal(err)
		}
		fn(t, serverDeployment{cfg: cfg, b: &backend{store: st, blobs: bs, s3: &m, userID: "usr_e2e"}})
	})
}

// TestKillServerRandomPoints: the server process killed at random points
// of uploads (opening, amid the chunks, before, during and after the
// completion) and restarted on the same data directory, database and
// bucket; the client, in this process, gives up with it and resumes once
// the server is back. Then an upload abandoned after a server kill, and
// the jobs.
func TestKillServerRandomPoints(t *testing.T) {
	seed := killSeed(t)
	serverDeployments(t, func(t *testing.T, d serverDeployment) {
		rng := rngFor(seed, t.Name())
		b := d.b
		srv := startServerKid(t, d.cfg)
		b.url = srv.url
		b.key, b.secret = testenv.Provision(t, srv.url, webhookSecret, b.userID, "enterprise")
		proxy := newTrapProxy(t, srv.url)
		c := &engine.Client{BaseURL: proxy.URL, APIKey: b.key, APISecret: b.secret}
		hashFirst := false // every third upload on the manifest-first path, the others pipelined
		opts := func(journal string) engine.Options {
			return engine.Options{Workers: killWorkers, ChunkSize: killChunk, JournalDir: journal, HashFirst: hashFirst,
				Retry: engine.RetryPolicy{BaseDelay: 10 * time.Millisecond}}
		}
		restart := func() {
			srv = startServerKid(t, d.cfg)
			b.url = srv.url
			proxy.setTarget(t, srv.url)
		}
		started := time.Now()
		var done []content
		var restarts int

		// killServer runs an upload until the trap kills the server, and
		// stops the client with it.
		killServer := func(path, journal string, kp killPoint) {
			t.Helper()
			tr := proxy.arm(kp, true, func() { srv.kill() }, b.assembledFunc(len(done)))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ended := make(chan error, 1)
			go func() {
				_, err := engine.Upload(ctx, c, path, opts(journal))
				ended <- err
			}()
			select {
			case <-tr.fired:
			case err := <-ended:
				if !tr.done() {
					t.Fatalf("the upload ended (%v) before the server's kill at %v", err, kp)
				}
				ended <- err
			case <-time.After(60 * time.Second):
				t.Fatalf("the kill at %v did not fire within 60s", kp)
			}
			cancel()
			<-ended
			proxy.disarm()
		}

		for i, group := range killSchedule(rng, 5) {
			if i >= 3 && time.Since(started) > killBudget {
				t.Logf("time budget spent after %d uploads", i)
				break
			}
			hashFirst = i%3 == 2
			size := killSize(rng.Int64N)
			path, sum := writeFile(t, byte(130+i), size)
			b.wrote(sum)
			journal := t.TempDir()
			kp := drawPoint(rng, group, size, 150*time.Millisecond)
			before := proxy.chunkBytes.Load()
			killServer(path, journal, kp)
			sid := journalSession(t, journal, proxy.URL, path)
			// While the server is dead: the database and the store.
			completed := b.checkKilled(t, sum, size, sid, false, true, kp.completing())
			state := ""
			if sid != "" {
				state = string(b.session(t, sid).State)
			}
			t.Logf("upload %d (%.1f MiB): server killed at %v: %.1f MiB of chunks sent, session %q %s, %.1f MiB stored, %d bytes reserved, completed: %v",
				i, mibOf(size), kp, mibOf(proxy.chunkBytes.Load()-before), sid, state, mibOf(b.storedBytes(t, sum, size, sid)), b.account(t).StorageReservedBytes, completed)
			restart()
			restarts++
			// Restarted, before the resume: the API too.
			b.checkKilled(t, sum, size, sid, true, true, kp.completing())

			held := b.storedBytes(t, sum, size, sid)
			before = proxy.chunkBytes.Load()
			res, err := engine.Upload(context.Background(), c, path, opts(journal))
			if err != nil {
				t.Fatalf("resumed upload %d: %v", i, err)
			}
			sent := proxy.chunkBytes.Load() - before
			if res.Asset.Hash != sum || res.Asset.Size != size {
				t.Fatalf("resumed upload %d: asset %+v, want %s (%d bytes)", i, res.Asset, sum, size)
			}
			done = append(done, content{sum, size})
			b.checkCompleted(t, sum, size, res.Asset.ID, done)
			t.Logf("upload %d resumed: %.1f MiB sent, %.1f MiB were held; %d bytes reserved after it", i, mibOf(sent), mibOf(held), b.account(t).StorageReservedBytes)
			if !completed && sent > size-held {
				t.Errorf("resumed upload %d sent %d bytes, more than the %d missing", i, sent, size-held)
			}
			// Killed once every chunk was sent (at or inside complete):
			// the resume completes the same session and sends nothing;
			// before completion leases it sent the whole file again.
			if strings.HasPrefix(kp.at, "complete") && sent != 0 {
				t.Errorf("upload %d, server killed at %v: the resume sent %d bytes; every chunk was already held", i, kp, sent)
			}
		}

		// An upload whose server died mid-chunks and that nobody resumes.
		size := killSize(rng.Int64N)
		path, sum := writeFile(t, 129, size)
		b.wrote(sum)
		journal := t.TempDir()
		kp := drawPoint(rng, "chunks", size, 0)
		killServer(path, journal, kp)
		sid := journalSession(t, journal, proxy.URL, path)
		b.checkKilled(t, sum, size, sid, false, true, false)
		parts := b.checkParts(t, sid, path, killChunk)
		tmp := b.tempFiles(t)
		restart() // and never resumed
		restarts++
		srv.stop(t)
		rep := b.runJobs(t)
		t.Logf("abandoned at %v with %d whole parts and %d temporary files; jobs: %+v", kp, parts, len(tmp), rep)
		b.checkCleanup(t, done)
		restart()
		for _, a := range b.apiAssets(t) {
			if h, n := b.download(t, a.ID); h != a.Hash || n != a.Size {
				t.Fatalf("after cleanup, asset %s downloads as %s (%d bytes)", a.ID, h, n)
			}
		}
		t.Logf("%d uploads, %d server kills and restarts in %v", len(done), restarts, time.Since(started).Round(time.Millisecond))
	})
}

// TestKillRelayRandomPoints: a relay process killed at a random point of
// the chunks it carries (behind a counting proxy), in mode relay on
// SQLite and files and in mode s3 on PostgreSQL, MinIO and Redis. Each
// upload completes through the other relay, byte-identical, listed and
// counted once, with no multipart upload or temporary file left; then an
// upload whose client dies with the relay is abandoned and the jobs leave
// nothing of it.
func TestKillRelayRandomPoints(t *testing.T) {
	seed := killSeed(t)
	run := func(t *testing.T, s *server, s3c *s3blob.Config) {
		rng := rngFor(seed, t.Name())
		b := backendOf(s)
		other := listen(t)
		startRelayConfig(t, relayConfig(s.url, "edge_other", s3c), other)
		c := &engine.Client{BaseURL: s.url, APIKey: s.key, APISecret: s.secret}
		started := time.Now()
		var done []content

		// upload sends a file through a fresh victim relay (behind a trap
		// proxy, with most of the workers) and the other relay; the
		// victim dies once kp's bytes went its way (and the client with
		// it when abandon is set).
		upload := func(i int, size int64, abandon bool) (string, string, string, *engine.Result, error) {
			t.Helper()
			victim := startRelayKid(t, s.url, fmt.Sprintf("edge_victim%d", i), s3c)
			proxy := newTrapProxy(t, victim.url)
			path, sum := writeFile(t, byte(150+i), size)
			b.wrote(sum)
			journal := t.TempDir()
			kp := killPoint{at: atChunks, bytes: 1 + rng.Int64N(size/2)}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			tr := proxy.arm(kp, abandon, func() {
				victim.kill()
				if abandon {
					cancel()
				}
			}, nil)
			vr := relayRoute("edge_victim", proxy.URL)
			vr.Weight = 3
			res, err := engine.Upload(ctx, c, path, engine.Options{
				Workers: 8, ChunkSize: killChunk, JournalDir: journal,
				Edges: fixedRoutes{vr, relayRoute("edge_other", "http://"+other.Addr().String())},
				Retry: engine.RetryPolicy{BaseDelay: 50 * time.Millisecond},
			})
			if !tr.done() {
				t.Fatalf("upload %d: the victim relay carried less than %v: nothing was killed", i, kp)
			}
			t.Logf("upload %d (%.1f MiB): relay killed at %v", i, mibOf(size), kp)
			return path, sum, journalSession(t, journal, s.url, path), res, err
		}

		for i := 0; i < 3; i++ {
			if i >= 2 && time.Since(started) > killBudget {
				break
			}
			size := 8*killChunk + rng.Int64N(4*killChunk)
			_, sum, _, res, err := upload(i, size, false)
			if err != nil {
				t.Fatalf("upload %d: %v", i, err)
			}
			if res.Asset.Hash != sum || res.ChunksSent != res.ChunksTotal {
				t.Fatalf("upload %d: hash %s, %d of %d chunks sent", i, res.Asset.Hash, res.ChunksSent, res.ChunksTotal)
			}
			done = append(done, content{sum, size})
			b.checkCompleted(t, sum, size, res.Asset.ID, done)
			if acct := b.account(t); acct.StorageReservedBytes != 0 {
				t.Fatalf("upload %d: %d bytes still reserved", i, acct.StorageReservedBytes)
			}
			if ups := b.uploads(t); len(ups) != 0 {
				t.Fatalf("upload %d: multipart uploads left: %v", i, ups)
			}
			if tmp := b.tempFiles(t); len(tmp) != 0 {
				t.Fatalf("upload %d: temporary files left: %v", i, tmp)
			}
			t.Logf("upload %d: chunks by route %v; %.1f MiB sent for %.1f MiB", i, chunksOf(res), mibOf(res.BytesSent), mibOf(size))
		}

		size := 8*killChunk + rng.Int64N(4*killChunk)
		path, sum, sid, _, err := upload(9, size, true)
		if err == nil {
			t.Fatal("the abandoned upload completed")
		}
		if sid == "" {
			t.Fatal("the abandoned upload has no session")
		}
		b.quiesce(t)
		b.checkKilled(t, sum, size, sid, true, false, false)
		parts := b.checkParts(t, sid, path, killChunk)
		rep := b.runJobs(t)
		t.Logf("abandoned with %d whole parts held; jobs: %+v", parts, rep)
		b.checkCleanup(t, done)
		t.Logf("%d uploads through killed relays in %v", len(done), time.Since(started).Round(time.Millisecond))
	}
	t.Run("sqlite+fs/relay", func(t *testing.T) {
		run(t, startEdgeServer(t), nil)
	})
	t.Run("postgres+s3+redis/s3", func(t *testing.T) {
		m := testenv.MinIO(t)
		s3c := &s3blob.Config{Endpoint: m.Endpoint, Region: m.Region, AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, Bucket: m.Bucket}
		run(t, startServer(t, app.Config{
			DataDir: t.TempDir(), DatabaseURL: testenv.PostgresURL(t), RedisURL: testenv.RedisURL(t),
			S3: s3c, EdgeSecret: edgeSecret,
		}), s3c)
	})
}
