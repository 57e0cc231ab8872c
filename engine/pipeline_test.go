package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/engine/upindex"
	"github.com/jettythunder/jetty/protocol"
)

// countingReaderAt counts the bytes read through it.
type countingReaderAt struct {
	r    io.ReaderAt
	read atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.read.Add(int64(n))
	return n, err
}

// TestPipelinedSendsBeforeHashing: a new file's first chunk PUT leaves
// before the file has been read through (the manifest-first path reads
// and hashes it all first), the session was opened sized, and the result
// is byte-identical with the whole-file hash in the manifest.
func TestPipelinedSendsBeforeHashing(t *testing.T) {
	f := newFake(t)
	data := genBytes(41, 20*5*MiB+123) // 21 chunks of 5 MiB
	cr := &countingReaderAt{r: bytes.NewReader(data)}
	var readAtFirst atomic.Int64
	readAtFirst.Store(-1)
	f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		readAtFirst.CompareAndSwap(-1, cr.read.Load())
		time.Sleep(20 * time.Millisecond) // the link is slower than the disk
		return false
	}
	opts := Options{Workers: 2, ChunkSize: 5 * MiB, Sleep: (&noSleep{}).sleep}
	res, err := UploadReader(context.Background(), f.client(), cr, int64(len(data)), "p.bin", opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Method != MethodPipelined || res.Deduplicated || res.ChunksSent != 21 {
		t.Errorf("result %+v", res)
	}
	if got := readAtFirst.Load(); got < 0 || got >= int64(len(data))/2 {
		t.Errorf("%d of %d bytes were read before the first chunk PUT; want a few chunks at most", got, len(data))
	}
	if cr.read.Load() != int64(len(data)) {
		t.Errorf("read %d bytes of a %d-byte file: want it read once", cr.read.Load(), len(data))
	}
	f.mu.Lock()
	first := f.opens[0].Session
	f.mu.Unlock()
	if first == nil || first.Size != int64(len(data)) {
		t.Errorf("the session was not opened sized: %+v", first)
	}
	if !bytes.Equal(f.object(hexSum(data)), data) || res.Asset.Hash != hexSum(data) {
		t.Error("assembled bytes or hash differ")
	}
}

// pipelinedFirstRun uploads path with one worker while chunk 4 is refused
// for good: chunks 0..3 are held and the journal names the session.
func pipelinedFirstRun(t *testing.T, f *fakeServer, path string, opts Options) {
	t.Helper()
	pipelinedFirstRunWith(t, f, f.client(), path, opts)
}

func pipelinedFirstRunWith(t *testing.T, f *fakeServer, c *Client, path string, opts Options) {
	t.Helper()
	f.setPutHook(func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		if index == 4 {
			writeErr(w, 403, "account_suspended", "suspended for a moment")
			return true
		}
		return false
	})
	opts.Workers = 1
	res, err := Upload(context.Background(), c, path, opts)
	if err == nil {
		t.Fatal("first run succeeded")
	}
	if res.ChunksSent != 4 || res.Method != MethodPipelined {
		t.Fatalf("first run stored %d chunks by %q", res.ChunksSent, res.Method)
	}
	f.setPutHook(nil)
}

func readJournal(t *testing.T, dir string) (string, Journal) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 {
		t.Fatalf("journal dir: %v, %d entries", err, len(ents))
	}
	p := filepath.Join(dir, ents[0].Name())
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var j Journal
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	return p, j
}

// TestPipelinedResumeSendsOnlyMissing: after a failed pipelined run the
// next one takes up the same session (no new open), sends only the
// chunks the server lacks, and the object is byte-identical; the journal
// had the session and the hashes made, and is gone after success.
func TestPipelinedResumeSendsOnlyMissing(t *testing.T) {
	for _, lost := range []bool{false, true} {
		name := "journal-intact"
		if lost {
			name = "hashes-lost" // killed between PUTs and the journal's write
		}
		t.Run(name, func(t *testing.T) {
			f := newFake(t)
			path, data := writeFile(t, 26, 50*MiB+3) // 7 chunks of 8 MiB
			opts := baseOpts(t)
			pipelinedFirstRun(t, f, path, opts)
			jp, j := readJournal(t, opts.JournalDir)
			if j.Pipe == nil || j.Manifest != nil || j.SessionID == "" {
				t.Fatalf("journal %+v", j)
			}
			want := sequentialManifest("", data, 8*MiB)
			for i := range 4 {
				if j.Pipe.Chunks[i] != want.Chunks[i].SHA256 {
					t.Errorf("journal chunk %d: %q", i, j.Pipe.Chunks[i])
				}
			}
			if lost {
				j.Pipe.Chunks[2], j.Pipe.Chunks[3] = "", ""
				j.Pipe.Whole, j.Pipe.WholeChunks = nil, 0
				b, _ := json.Marshal(j)
				if err := os.WriteFile(jp, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			f.mu.Lock()
			opens := len(f.opens)
			f.mu.Unlock()

			rec := &recorder{}
			opts.Workers, opts.Progress = 8, rec
			res, err := Upload(context.Background(), f.client(), path, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(f.object(hexSum(data)), data) {
				t.Fatal("assembled bytes differ")
			}
			var wantBytes int64
			for _, c := range want.Chunks[4:] {
				wantBytes += c.Size
			}
			if !res.Resumed || res.ChunksSent != 3 || res.BytesSent != wantBytes || res.SessionID != j.SessionID {
				t.Errorf("second run: resumed %v, %d chunks, %d bytes, session %s; want 3 chunks, %d bytes of %s", res.Resumed, res.ChunksSent, res.BytesSent, res.SessionID, wantBytes, j.SessionID)
			}
			f.mu.Lock()
			if len(f.opens) != opens {
				t.Errorf("the second run opened %d new sessions", len(f.opens)-opens)
			}
			for i := range 4 {
				if f.attempts[i] != 1 {
					t.Errorf("chunk %d was sent %d times", i, f.attempts[i])
				}
			}
			f.mu.Unlock()
			for _, e := range rec.events {
				if e.Kind == EventStart && (e.ChunksDone != 4 || e.Done != 4*8*MiB) {
					t.Errorf("start event %+v: want 4 chunks done", e)
				}
			}
			if ents, _ := os.ReadDir(opts.JournalDir); len(ents) != 0 {
				t.Errorf("journal left after success: %d entries", len(ents))
			}
		})
	}
}

// TestPipelinedResumeReadsFromJournaledState: a resumed run goes on with
// the journaled whole-file hash state: it reads only the chunks after
// that prefix, plus those before it the server lacks.
func TestPipelinedResumeReadsFromJournaledState(t *testing.T) {
	f := newFake(t)
	data := genBytes(27, 10*5*MiB) // 10 chunks of 5 MiB
	var saved *PipeJournal
	var session string
	var mu sync.Mutex
	save := func(p *PipeJournal, s string) error {
		mu.Lock()
		defer mu.Unlock()
		cp := *p
		cp.Chunks = append([]string(nil), p.Chunks...)
		saved, session = &cp, s
		return nil
	}
	f.setPutHook(func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		if index == 6 {
			writeErr(w, 403, "account_suspended", "suspended for a moment")
			return true
		}
		return false
	})
	opts := Options{Workers: 1, ChunkSize: 5 * MiB, Sleep: (&noSleep{}).sleep}
	u := newUploader(f.client(), opts)
	if _, err := u.uploadAny(context.Background(), fileUpload{r: bytes.NewReader(data), size: int64(len(data)), name: "r.bin", savePipe: save}); err == nil {
		t.Fatal("first run succeeded")
	}
	f.setPutHook(nil)
	mu.Lock()
	pj, sid := saved, session
	mu.Unlock()
	if pj == nil || pj.WholeChunks < 6 {
		t.Fatalf("journal %+v: want the hash state after at least the 6 chunks sent", pj)
	}
	cr := &countingReaderAt{r: bytes.NewReader(data)}
	u2 := newUploader(f.client(), Options{Workers: 4, Sleep: (&noSleep{}).sleep})
	res, err := u2.finish(u2.uploadAny(context.Background(), fileUpload{r: cr, size: int64(len(data)), name: "r.bin", pipe: pj, session: sid, savePipe: save}))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.ChunksSent != 4 {
		t.Errorf("resumed %v, sent %d chunks; want 4", res.Resumed, res.ChunksSent)
	}
	if max := int64(10-pj.WholeChunks) * 5 * MiB; cr.read.Load() > max+4*5*MiB || cr.read.Load() < 4*5*MiB {
		t.Errorf("read %d bytes; the state stood at chunk %d", cr.read.Load(), pj.WholeChunks)
	}
	if !bytes.Equal(f.object(hexSum(data)), data) || res.Asset.Hash != hexSum(data) {
		t.Error("assembled bytes or hash differ")
	}
}

// TestPipelinedOlderServers: a server without stream sessions gets the
// manifest first (with a warning); one that ignores the size still takes
// the pipelined upload; one whose status cannot resume a sized session
// starts a new one.
func TestPipelinedOlderServers(t *testing.T) {
	t.Run("no-streams", func(t *testing.T) {
		f := newFake(t)
		f.noStreams = true
		path, data := writeFile(t, 28, 20*MiB+1)
		rec := &recorder{}
		opts := baseOpts(t)
		opts.Progress = rec
		res, err := Upload(context.Background(), f.client(), path, opts)
		if err != nil {
			t.Fatal(err)
		}
		if res.Method != MethodManifest || rec.count(EventWarning) != 1 || !bytes.Equal(f.object(hexSum(data)), data) {
			t.Errorf("method %q, %d warnings", res.Method, rec.count(EventWarning))
		}
	})
	t.Run("size-ignored", func(t *testing.T) {
		f := newFake(t)
		f.oldServer = true
		path, data := writeFile(t, 29, 50*MiB+3)
		opts := baseOpts(t)
		pipelinedFirstRun(t, f, path, opts)
		res, err := Upload(context.Background(), f.client(), path, opts)
		if err != nil {
			t.Fatal(err)
		}
		if res.Method != MethodPipelined || res.Resumed || res.ChunksSent != 7 || !bytes.Equal(f.object(hexSum(data)), data) {
			t.Errorf("method %q, resumed %v, %d chunks: want a new pipelined session", res.Method, res.Resumed, res.ChunksSent)
		}
	})
}

// TestPipelinedFileChanged: a file written to while it is uploaded is not
// recorded (nothing completed), and its journal is dropped.
func TestPipelinedFileChanged(t *testing.T) {
	f := newFake(t)
	path, _ := writeFile(t, 30, 30*MiB)
	var once sync.Once
	f.putHook = func(w http.ResponseWriter, r *http.Request, index, attempt int) bool {
		once.Do(func() {
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(path, later, later); err != nil {
				t.Error(err)
			}
		})
		return false
	}
	opts := baseOpts(t)
	opts.Workers = 1
	_, err := Upload(context.Background(), f.client(), path, opts)
	if !errors.Is(err, ErrFileChanged) {
		t.Fatalf("err = %v, want ErrFileChanged", err)
	}
	f.mu.Lock()
	completes := f.completes
	f.mu.Unlock()
	if completes != 0 {
		t.Errorf("%d completions of a file that changed", completes)
	}
	if ents, _ := os.ReadDir(opts.JournalDir); len(ents) != 0 {
		t.Errorf("journal kept: %d entries", len(ents))
	}
}

// TestPipelinedDedupAtComplete: content the server holds already is sent
// (the pipelined path cannot ask first) and dropped at completion, and
// the result says so; the manifest-first path finds it at the open.
func TestPipelinedDedupAtComplete(t *testing.T) {
	f := newFake(t)
	path, _ := writeFile(t, 31, 20*MiB)
	first, err := Upload(context.Background(), f.client(), path, baseOpts(t))
	if err != nil || first.Deduplicated || first.DedupAt != "" {
		t.Fatalf("first: %+v, %v", first, err)
	}
	again, err := Upload(context.Background(), f.client(), path, baseOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Deduplicated || again.DedupAt != DedupAtComplete || again.Method != MethodPipelined {
		t.Errorf("pipelined re-upload: dedup %v at %q by %q", again.Deduplicated, again.DedupAt, again.Method)
	}
	hf, err := Upload(context.Background(), f.client(), path, hashFirstOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	if !hf.Deduplicated || hf.DedupAt != DedupAtOpen || hf.BytesSent != 0 {
		t.Errorf("hash-first re-upload: dedup %v at %q, %d bytes sent", hf.Deduplicated, hf.DedupAt, hf.BytesSent)
	}
}

// TestPipeJournalValid: a pipelined journal that cannot describe the file
// is not used.
func TestPipeJournalValid(t *testing.T) {
	h := hexSum([]byte("x"))
	ok := PipeJournal{ChunkSize: 5 * MiB, Chunks: []string{h, "", h}, Whole: []byte("state"), WholeChunks: 1}
	if !ok.valid(11 * MiB) {
		t.Fatal("a good journal refused")
	}
	for name, p := range map[string]PipeJournal{
		"chunk count":          {ChunkSize: 5 * MiB, Chunks: []string{h, h}},
		"chunk size":           {ChunkSize: 1, Chunks: []string{h, "", h}},
		"bad hash":             {ChunkSize: 5 * MiB, Chunks: []string{"zz", "", h}},
		"state without hashes": {ChunkSize: 5 * MiB, Chunks: []string{h, "", h}, Whole: []byte("s"), WholeChunks: 2},
		"state missing":        {ChunkSize: 5 * MiB, Chunks: []string{h, "", h}, WholeChunks: 1},
		"beyond":               {ChunkSize: 5 * MiB, Chunks: []string{h, h, h}, Whole: []byte("s"), WholeChunks: 4},
	} {
		if p.valid(11 * MiB) {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestIndexUploadsUnchangedWithoutReading: with the local index, a file
// uploaded before and unchanged is opened with its recorded manifest:
// nothing is read to hash it and nothing is sent (the server holds the
// content); a changed file is read and sent again; an entry in doubt is
// checked by hashing.
func TestIndexUploadsUnchangedWithoutReading(t *testing.T) {
	f := newFake(t)
	path, data := writeFile(t, 32, 30*MiB+5)
	ix, err := upindex.Open(filepath.Join(t.TempDir(), "index"))
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour) // safely before any recording
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	opts := baseOpts(t)
	opts.Index = ix
	first, err := Upload(context.Background(), f.client(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if first.Index != IndexMiss || first.Method != MethodPipelined || first.Deduplicated {
		t.Errorf("first: index %q, method %q, dedup %v", first.Index, first.Method, first.Deduplicated)
	}
	if n, _ := ix.Len(); n != 1 {
		t.Fatalf("%d index entries after the first upload", n)
	}
	rec := &recorder{}
	opts.Progress = rec
	again, err := Upload(context.Background(), f.client(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if again.Index != IndexHit || !again.Deduplicated || again.DedupAt != DedupAtOpen || again.BytesSent != 0 || again.Method != MethodManifest {
		t.Errorf("unchanged: index %q, dedup %v at %q, %d bytes sent by %q", again.Index, again.Deduplicated, again.DedupAt, again.BytesSent, again.Method)
	}
	if rec.count(EventPlan) != 0 {
		t.Error("the unchanged file was hashed")
	}

	// Other content of the same size: a miss (its Stat changed), read and
	// sent, and the index follows.
	changed := genBytes(33, int64(len(data)))
	if err := os.WriteFile(path, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	third, err := Upload(context.Background(), f.client(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if third.Index != IndexMiss || third.Deduplicated || third.Asset.Hash != hexSum(changed) || !bytes.Equal(f.object(hexSum(changed)), changed) {
		t.Errorf("changed: index %q, dedup %v, hash %s", third.Index, third.Deduplicated, third.Asset.Hash)
	}

	// An entry recorded just after the file's mtime is in doubt: checked
	// by hashing, then trusted.
	if err := os.Chtimes(path, time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := Upload(context.Background(), f.client(), path, opts); err != nil {
		t.Fatal(err)
	}
	rec2 := &recorder{}
	opts.Progress = rec2
	fourth, err := Upload(context.Background(), f.client(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if fourth.Index != IndexChecked || rec2.count(EventPlan) == 0 || !fourth.Deduplicated {
		t.Errorf("in doubt: index %q, %d plan events, dedup %v", fourth.Index, rec2.count(EventPlan), fourth.Deduplicated)
	}
}

// TestPipelinedOpenAnswerLost: an open whose answer is lost after the
// server created the session (a proxy's 502) is asked again with the same
// ref and gets that session, not a second reservation; a journal with a
// ref but no session (killed before it could write the session) resumes
// the session the ref names, sending only what it lacks.
func TestPipelinedOpenAnswerLost(t *testing.T) {
	f := newFake(t)
	path, data := writeFile(t, 34, 50*MiB+9) // 7 chunks of 8 MiB
	target, _ := url.Parse(f.srv.URL)
	var lost atomic.Bool
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(r *http.Response) error {
		if r.Request.Method == "POST" && r.Request.URL.Path == "/api/jetty/sessions" && lost.CompareAndSwap(false, true) {
			return errors.New("answer lost")
		}
		return nil
	}
	proxy := httptest.NewServer(rp)
	defer proxy.Close()
	c := f.client()
	c.BaseURL = proxy.URL

	opts := baseOpts(t)
	pipelinedFirstRunWith(t, f, c, path, opts)
	f.mu.Lock()
	sessions := len(f.sessions)
	f.mu.Unlock()
	if !lost.Load() || sessions != 1 {
		t.Fatalf("answer lost %v; %d sessions after a lost open answer, want 1", lost.Load(), sessions)
	}

	// Killed before the journal named the session: only the ref is left.
	jp, j := readJournal(t, opts.JournalDir)
	if j.Pipe == nil || !protocol.ValidClientRef(j.Pipe.Ref) {
		t.Fatalf("journal has no ref: %+v", j.Pipe)
	}
	j.SessionID = ""
	b, _ := json.Marshal(j)
	if err := os.WriteFile(jp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := Upload(context.Background(), c, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	sessions = len(f.sessions)
	f.mu.Unlock()
	if sessions != 1 || !res.Resumed || res.ChunksSent != 3 || !bytes.Equal(f.object(hexSum(data)), data) {
		t.Errorf("%d sessions; resumed %v, %d chunks sent; want the one session and 3 chunks", sessions, res.Resumed, res.ChunksSent)
	}
}

// TestPipelinedDirectRoute: a sized session's chunks go straight to
// storage too: each presign call names the hashes of the chunks it asks
// for (hashed by then), the store checks each part against its signed
// hash, and the file is assembled byte-identical; a server that did not
// echo the size (older) gets no presign call at all.
func TestPipelinedDirectRoute(t *testing.T) {
	for _, old := range []bool{false, true} {
		name := "sized"
		if old {
			name = "size-not-echoed"
		}
		t.Run(name, func(t *testing.T) {
			f := newFake(t)
			f.oldServer = old
			st := newStore(f)
			var sawHashes atomic.Int32
			f.mu.Lock()
			f.presignHook = func(req protocol.PresignRequest) {
				if len(req.SHA256) == len(req.Chunks) {
					sawHashes.Add(1)
				}
			}
			f.mu.Unlock()
			path, data := writeFile(t, 35, 40*MiB+17)
			opts, _, _ := routeOpts(4, selectFunc(func(ctx context.Context, s *protocol.Session, cs int64, workers int) ([]Route, error) {
				return []Route{st.route(s, 1)}, nil
			}))
			opts.HashFirst = false
			res, err := Upload(context.Background(), f.client(), path, opts)
			checkNoWorkers(t)
			if err != nil {
				t.Fatal(err)
			}
			if res.Method != MethodPipelined || !bytes.Equal(f.object(hexSum(data)), data) {
				t.Fatalf("method %q; assembled bytes differ", res.Method)
			}
			d, _ := edgeByID(res, "direct")
			switch {
			case !old && (d.Chunks == 0 || len(st.calls()) == 0 || int(sawHashes.Load()) != len(st.calls())):
				t.Errorf("direct route stored %d chunks; %d presign calls, %d with hashes", d.Chunks, len(st.calls()), sawHashes.Load())
			case old && (d.Chunks != 0 || len(st.calls()) != 0):
				t.Errorf("an older server got %d presign calls, direct stored %d", len(st.calls()), d.Chunks)
			}
		})
	}
}

// TestBigFileStartsAtCeiling: with a worker advisor (the CLI's edges) and
// no worker count given, a file of at least a ceiling's worth of chunks
// starts with the tier's ceiling; a smaller one with the suggestion.
func TestBigFileStartsAtCeiling(t *testing.T) {
	for _, c := range []struct {
		chunks, want int
	}{{12, 6}, {4, 2}} {
		f := newFake(t)
		f.strategy = protocol.Strategy{Workers: 2, MaxWorkers: 6}
		sel := growingSelector{slowSelector: &slowSelector{delay: 0, routes: func(s *protocol.Session) []Route { return nil }}, advise: 2}
		path, _ := writeFile(t, 36, int64(c.chunks)*5*MiB)
		opts := baseOpts(t)
		opts.ChunkSize, opts.Edges = 5*MiB, sel
		res, err := Upload(context.Background(), f.client(), path, opts)
		if err != nil {
			t.Fatal(err)
		}
		if res.Workers != c.want {
			t.Errorf("%d chunks: started with %d workers, want %d", c.chunks, res.Workers, c.want)
		}
	}
}
