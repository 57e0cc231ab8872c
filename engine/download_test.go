package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// assetServer serves one asset's bytes with ranges, as the server's
// download endpoint does, counting the bytes it sends.
type assetServer struct {
	srv     *httptest.Server
	asset   protocol.Asset
	content []byte
	sent    atomic.Int64
	// notFound counts requests for other assets (answered 404).
	notFound atomic.Int64

	mu       sync.Mutex
	requests map[int64]int // by range offset
	// hook, when set, may answer a ranged request first (attempt is
	// 1-based per offset).
	hook func(w http.ResponseWriter, r *http.Request, off int64, attempt int) bool
}

func newAssetServer(t *testing.T, content []byte) *assetServer {
	t.Helper()
	sum := sha256.Sum256(content)
	s := &assetServer{content: content, requests: map[int64]int{},
		asset: protocol.Asset{ID: "a1", Filename: "file.bin", Size: int64(len(content)), Hash: hex.EncodeToString(sum[:])}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != protocol.PathAssets+"/a1/download" {
			s.notFound.Add(1)
			writeJSON(w, 404, protocol.ErrorBody{Error: "no such asset", Code: protocol.CodeNotFound})
			return
		}
		var off int64
		if rg := r.Header.Get("Range"); rg != "" {
			first, _, _ := strings.Cut(strings.TrimPrefix(rg, "bytes="), "-")
			off, _ = strconv.ParseInt(first, 10, 64)
		}
		s.mu.Lock()
		s.requests[off]++
		attempt, hook := s.requests[off], s.hook
		s.mu.Unlock()
		if hook != nil && hook(w, r, off, attempt) {
			return
		}
		cw := &countingWriter{ResponseWriter: w, n: &s.sent}
		http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(s.content))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *assetServer) client() *Client {
	return &Client{BaseURL: s.srv.URL, APIKey: "k", APISecret: "s"}
}

func (s *assetServer) attempts(off int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[off]
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n.Add(int64(n))
	return n, err
}

// progressLog records Download's progress calls.
type progressLog struct {
	mu    sync.Mutex
	calls []int64
}

func (p *progressLog) add(n int64) {
	p.mu.Lock()
	p.calls = append(p.calls, n)
	p.mu.Unlock()
}

func (p *progressLog) firstLast() (int64, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.calls) == 0 {
		return -1, -1
	}
	return p.calls[0], p.calls[len(p.calls)-1]
}

// threeRanges is an asset of two full ranges and a short one.
func threeRanges() []byte { return genBytes(90, 2*DownloadRangeSize+12345) }

// dirEntries lists a directory's names.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestDownload(t *testing.T) {
	content := threeRanges()
	s := newAssetServer(t, content)
	dir := t.TempDir()
	target := filepath.Join(dir, "file.bin")
	var p progressLog
	res, err := Download(context.Background(), s.client(), s.asset, target, DownloadOptions{Workers: 3, Progress: p.add})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); !bytes.Equal(b, content) {
		t.Fatal("the download differs")
	}
	if res != (DownloadResult{Fetched: int64(len(content)), Resumed: false, Verified: true}) {
		t.Errorf("result %+v", res)
	}
	if first, last := p.firstLast(); first != 0 || last != int64(len(content)) {
		t.Errorf("progress from %d to %d, want 0 to %d", first, last, len(content))
	}
	if names := dirEntries(t, dir); strings.Join(names, " ") != "file.bin" {
		t.Errorf("left in the directory: %v", names)
	}
	for off := int64(0); off < int64(len(content)); off += DownloadRangeSize {
		if n := s.attempts(off); n != 1 {
			t.Errorf("range at %d asked %d times", off, n)
		}
	}

	// An empty asset: an empty, verified file.
	empty := newAssetServer(t, nil)
	target = filepath.Join(dir, "empty.bin")
	res, err = Download(context.Background(), empty.client(), empty.asset, target, DownloadOptions{})
	if st, serr := os.Stat(target); err != nil || serr != nil || st.Size() != 0 || !res.Verified {
		t.Fatalf("empty asset: %+v %v %v", res, err, serr)
	}
}

// TestDownloadResumes: a download stopped by its context records the
// ranges it finished; the next Download to the same target fetches only
// the others, reports them, and says it resumed.
func TestDownloadResumes(t *testing.T) {
	content := threeRanges()
	s := newAssetServer(t, content)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.hook = func(w http.ResponseWriter, r *http.Request, off int64, attempt int) bool {
		if off == 2*DownloadRangeSize && attempt == 1 {
			cancel()
			<-r.Context().Done()
			return true
		}
		return false
	}
	dir := t.TempDir()
	target := filepath.Join(dir, "file.bin")
	_, err := Download(ctx, s.client(), s.asset, target, DownloadOptions{Workers: 1})
	var fe *DownloadFileError
	if !errors.Is(err, context.Canceled) || errors.As(err, &fe) {
		t.Fatalf("interrupted: %v", err)
	}
	if _, err := os.Stat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("an interrupted download left the target: %v", err)
	}
	var st partState
	b, _ := os.ReadFile(PartPath(target) + ".json")
	if err := json.Unmarshal(b, &st); err != nil || fmt.Sprint(st.Done) != "[0 1]" || st.RangeSize != DownloadRangeSize || st.SHA256 != s.asset.Hash {
		t.Fatalf("record after the interruption: %s %v", b, err)
	}

	before := s.sent.Load()
	var p progressLog
	res, err := Download(context.Background(), s.client(), s.asset, target, DownloadOptions{Progress: p.add})
	if err != nil {
		t.Fatal(err)
	}
	rest := int64(len(content)) - 2*DownloadRangeSize
	if got := s.sent.Load() - before; got != rest || res != (DownloadResult{Fetched: rest, Resumed: true, Verified: true}) {
		t.Fatalf("resumed: sent %d, result %+v; want %d fetched", got, res, rest)
	}
	if first, last := p.firstLast(); first != 2*DownloadRangeSize || last != int64(len(content)) {
		t.Errorf("progress from %d to %d", first, last)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, content) {
		t.Fatal("the resumed download differs")
	}
	if names := dirEntries(t, dir); strings.Join(names, " ") != "file.bin" {
		t.Errorf("left in the directory: %v", names)
	}
}

// TestDownloadRecordOfAnotherAsset: a part file whose record describes
// other content (another hash) is started over, not trusted.
func TestDownloadRecordOfAnotherAsset(t *testing.T) {
	content := threeRanges()
	s := newAssetServer(t, content)
	dir := t.TempDir()
	target := filepath.Join(dir, "file.bin")
	part := PartPath(target)
	os.WriteFile(part, bytes.Repeat([]byte{'x'}, len(content)), 0o600)
	side, _ := json.Marshal(partState{Version: partStateVersion, AssetID: "a1", Size: int64(len(content)), SHA256: strings.Repeat("0", 64), RangeSize: DownloadRangeSize, Done: []int{0, 1, 2}})
	os.WriteFile(part+".json", side, 0o600)
	res, err := Download(context.Background(), s.client(), s.asset, target, DownloadOptions{})
	if err != nil || res.Resumed || res.Fetched != int64(len(content)) {
		t.Fatalf("%+v %v", res, err)
	}
	if b, _ := os.ReadFile(target); !bytes.Equal(b, content) {
		t.Fatal("the download differs")
	}
}

// TestDownloadChecksumMismatch: bytes that do not hash to the asset's
// SHA-256 are never renamed onto the target; the part file and its
// record are removed.
func TestDownloadChecksumMismatch(t *testing.T) {
	s := newAssetServer(t, []byte("the bytes the server has"))
	a := s.asset
	a.Hash = strings.Repeat("ab", 32)
	dir := t.TempDir()
	target := filepath.Join(dir, "file.bin")
	_, err := Download(context.Background(), s.client(), a, target, DownloadOptions{})
	var fe *DownloadFileError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "not the stored SHA-256 "+a.Hash) {
		t.Fatalf("err = %v", err)
	}
	if names := dirEntries(t, dir); len(names) != 0 {
		t.Fatalf("left in the directory: %v", names)
	}
}

// TestDownloadRetriesRanges: a range cut short or answered 503 is asked
// again (after Retry-After when there is one); the bytes of the cut
// attempt are not counted twice. A 404 is not retried.
func TestDownloadRetriesRanges(t *testing.T) {
	content := threeRanges()
	s := newAssetServer(t, content)
	s.hook = func(w http.ResponseWriter, r *http.Request, off int64, attempt int) bool {
		switch {
		case off == 0 && attempt == 1: // cut after 1 MiB
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", DownloadRangeSize-1, len(content)))
			w.Header().Set("Content-Length", strconv.Itoa(DownloadRangeSize))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(content[:1<<20])
			return true
		case off == DownloadRangeSize && attempt == 1:
			w.Header().Set("Retry-After", "1")
			writeJSON(w, 503, protocol.ErrorBody{Error: "a moment", Code: protocol.CodeUnavailable})
			return true
		}
		return false
	}
	target := filepath.Join(t.TempDir(), "file.bin")
	start := time.Now()
	var p progressLog
	res, err := Download(context.Background(), s.client(), s.asset, target, DownloadOptions{Workers: 3, Progress: p.add})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < time.Second {
		t.Errorf("Retry-After 1 not waited: done in %v", el)
	}
	if s.attempts(0) != 2 || s.attempts(DownloadRangeSize) != 2 || s.attempts(2*DownloadRangeSize) != 1 {
		t.Errorf("attempts %v", s.requests)
	}
	if b, _ := os.ReadFile(target); !bytes.Equal(b, content) || res.Fetched != int64(len(content)) {
		t.Fatalf("result %+v", res)
	}
	if _, last := p.firstLast(); last != int64(len(content)) {
		t.Errorf("progress ends at %d", last)
	}

	// Not found: one attempt, the server's error.
	gone := s.asset
	gone.ID = "gone"
	_, err = Download(context.Background(), s.client(), gone, filepath.Join(t.TempDir(), "gone.bin"), DownloadOptions{Workers: 1})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Code != protocol.CodeNotFound {
		t.Fatalf("gone: %v", err)
	}
	if n := s.notFound.Load(); n != 1 {
		t.Errorf("a 404 was asked %d times", n)
	}
}

// TestDownloadRangeIgnored: a server (or proxy) that answers a ranged
// request with the whole file is ErrRangeIgnored, not retried.
func TestDownloadRangeIgnored(t *testing.T) {
	content := threeRanges()
	s := newAssetServer(t, content)
	s.hook = func(w http.ResponseWriter, r *http.Request, off int64, attempt int) bool {
		r.Header.Del("Range")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(content))
		return true
	}
	target := filepath.Join(t.TempDir(), "file.bin")
	_, err := Download(context.Background(), s.client(), s.asset, target, DownloadOptions{Workers: 1})
	if !errors.Is(err, ErrRangeIgnored) || s.attempts(0) != 1 {
		t.Fatalf("err = %v after %d attempts", err, s.attempts(0))
	}
	if _, err := os.Stat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("target written: %v", err)
	}
}

// TestDownloadPartSwappedBeforeRename: a part file replaced between its
// verification and the rename is not reported as the download.
func TestDownloadPartSwappedBeforeRename(t *testing.T) {
	s := newAssetServer(t, []byte("verified bytes"))
	target := filepath.Join(t.TempDir(), "file.bin")
	_, err := Download(context.Background(), s.client(), s.asset, target, DownloadOptions{BeforeRename: func(part string) {
		os.Remove(part)
		os.WriteFile(part, []byte("attacker bytes"), 0o644)
	}})
	var fe *DownloadFileError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "was replaced by another file after jetty verified it") || !strings.Contains(err.Error(), "delete "+target) {
		t.Fatalf("err = %v", err)
	}
}
