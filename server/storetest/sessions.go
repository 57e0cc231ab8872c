package storetest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
)

// sessionTests cover server.SessionStore.
var sessionTests = []storeTest{
	{"SessionRoundTrip", testSessionRoundTrip},
	{"SessionValidation", testSessionValidation},
	{"SessionIsolation", testSessionIsolation},
	{"OpenSessionFor", testOpenSessionFor},
	{"OpenSessionByRef", testOpenSessionByRef},
	{"BeginCompletionConcurrent", testBeginCompletionConcurrent},
	{"CompletionTransitions", testCompletionTransitions},
	{"AbortSession", testAbortSession},
	{"BeginCompletionExpired", testBeginCompletionExpired},
	{"StreamSession", testStreamSession},
	{"CompletionLease", testCompletionLease},
}

// testLease is the completion lease the tests take: long enough that no
// test outlives it by accident.
const testLease = 24 * time.Hour

// testManifest is a manifest of content cut into chunkSize chunks, as a
// client would send it: indented, keys in the protocol's order (not
// sorted), so that a store that rewrote it would be caught.
func testManifest(name, content string, chunkSize int) (manifest []byte, sha string, size int64, count int) {
	var chunks []string
	for off := 0; ; off += chunkSize {
		end := min(off+chunkSize, len(content))
		chunks = append(chunks, fmt.Sprintf(`    {"index": %d, "offset": %d, "size": %d, "sha256": %q}`,
			len(chunks), off, end-off, hashOf(content[off:end])))
		if end == len(content) {
			break // an empty file is one chunk of 0 bytes
		}
	}
	sha = hashOf(content)
	m := fmt.Sprintf("{\n  \"version\": 1,\n  \"name\": %q,\n  \"size\": %d,\n  \"chunk_size\": %d,\n  \"sha256\": %q,\n  \"chunks\": [\n%s\n  ]\n}\n",
		name, len(content), chunkSize, sha, strings.Join(chunks, ",\n"))
	return []byte(m), sha, int64(len(content)), len(chunks)
}

// newSession describes a session of account a uploading content, expiring
// in a day.
func newSession(a server.Account, content string) server.UploadSession {
	m, sha, size, count := testManifest("file-"+randHex(3)+".bin", content, 4)
	return server.UploadSession{
		AccountID:     a.ID,
		ObjectKey:     newObjectKey(a),
		UploadID:      "upload-" + randHex(8),
		Manifest:      m,
		SHA256:        sha,
		Size:          size,
		ChunkSize:     4,
		ChunkCount:    count,
		ReservationID: "res-" + randHex(8),
		Reserved:      size,
		Filename:      "file.bin",
		ExpiresAt:     time.Now().Add(24 * time.Hour).UTC().Truncate(time.Microsecond),
	}
}

// newStreamSession describes a stream session of account a.
func newStreamSession(a server.Account) server.UploadSession {
	return server.UploadSession{
		AccountID:     a.ID,
		ObjectKey:     newObjectKey(a),
		UploadID:      "upload-" + randHex(8),
		Size:          -1,
		ChunkSize:     8 << 20,
		ReservationID: "res-" + randHex(8),
		Reserved:      500 * server.MiB,
		Filename:      "build.tar",
		ExpiresAt:     time.Now().Add(24 * time.Hour).UTC().Truncate(time.Microsecond),
	}
}

func mustSession(t *testing.T, s server.Store, u server.UploadSession) server.UploadSession {
	t.Helper()
	got, err := s.CreateSession(ctxFor(t), u)
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return got
}

func mustGetSession(t *testing.T, s server.Store, accountID, id string) server.UploadSession {
	t.Helper()
	got, err := s.SessionByID(ctxFor(t), accountID, id)
	if err != nil {
		t.Fatalf("SessionByID(%s): %v", id, err)
	}
	return got
}

// sameSession compares sessions, times by instant.
func sameSession(a, b server.UploadSession) bool {
	if !a.ExpiresAt.Equal(b.ExpiresAt) || !a.CreatedAt.Equal(b.CreatedAt) || !a.UpdatedAt.Equal(b.UpdatedAt) || !a.LeaseUntil.Equal(b.LeaseUntil) {
		return false
	}
	a.ExpiresAt, a.CreatedAt, a.UpdatedAt, a.LeaseUntil = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	b.ExpiresAt, b.CreatedAt, b.UpdatedAt, b.LeaseUntil = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

func wantState(t *testing.T, s server.Store, accountID, id string, want server.SessionState) server.UploadSession {
	t.Helper()
	u := mustGetSession(t, s, accountID, id)
	if u.State != want {
		t.Fatalf("session %s is %s, want %s", id, u.State, want)
	}
	return u
}

func mustBegin(t *testing.T, s server.Store, accountID, id string) server.UploadSession {
	t.Helper()
	u, ok, err := s.BeginCompletion(ctxFor(t), accountID, id, time.Now(), testLease)
	if err != nil || !ok || u.State != server.SessionCompleting {
		t.Fatalf("BeginCompletion = %s, %v, %v; want completing, true", u.State, ok, err)
	}
	return u
}

func testSessionRoundTrip(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	in := newSession(a, "hello, sessions: round trip")
	in.Filename = "rapport d'été ü.bin"
	in.ContentType = "application/octet-stream"
	in.CacheKey = "pipeline-7:step-3"
	in.TTLSeconds = 3600
	in.ExpiresAt = time.Date(2040, 2, 3, 4, 5, 6, 123456789, time.FixedZone("X", -7200))
	// Ignored on create.
	in.State, in.AssetID, in.Deduplicated = server.SessionCompleted, "asset-x", true

	before := time.Now().Add(-time.Second)
	got, err := s.CreateSession(ctx, in)
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	after := time.Now().Add(time.Second)
	if !server.ValidSessionID(got.ID) || !strings.HasPrefix(got.ID, "ses_") || len(got.ID) != 30 || got.ID != strings.ToLower(got.ID) {
		t.Errorf("session id %q is not ses_ + 26 lower-case base32 characters", got.ID)
	}
	want := in
	want.ID = got.ID
	want.State, want.AssetID, want.Deduplicated = server.SessionOpen, "", false
	want.ExpiresAt = in.ExpiresAt.Truncate(time.Microsecond)
	want.CreatedAt, want.UpdatedAt = got.CreatedAt, got.UpdatedAt
	if !sameSession(got, want) {
		t.Fatalf("CreateSession = %+v\nwant %+v", got, want)
	}
	if got.CreatedAt.Before(before) || got.CreatedAt.After(after) || got.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt = %v, want UTC between %v and %v", got.CreatedAt, before, after)
	}
	if !got.UpdatedAt.Equal(got.CreatedAt) || got.ExpiresAt.Location() != time.UTC || got.UpdatedAt.Location() != time.UTC {
		t.Errorf("UpdatedAt %v, ExpiresAt %v: want UTC, UpdatedAt = CreatedAt %v", got.UpdatedAt, got.ExpiresAt, got.CreatedAt)
	}
	b := mustGetSession(t, s, a.ID, got.ID)
	if !sameSession(b, got) {
		t.Fatalf("SessionByID = %+v\nwant %+v", b, got)
	}
	if string(b.Manifest) != string(in.Manifest) {
		t.Errorf("manifest not stored as received:\n%s\nwant\n%s", b.Manifest, in.Manifest)
	}

	// The hash is stored in lower case; the zero values round-trip.
	in2 := newSession(a, "second")
	in2.SHA256 = strings.ToUpper(in2.SHA256)
	in2.UploadID, in2.ReservationID, in2.Reserved, in2.Filename = "", "", 0, ""
	got2 := mustSession(t, s, in2)
	b2 := mustGetSession(t, s, a.ID, got2.ID)
	if !sameSession(b2, got2) || b2.SHA256 != strings.ToLower(in2.SHA256) || b2.UploadID != "" || b2.ReservationID != "" ||
		b2.Reserved != 0 || b2.Filename != "" || b2.ContentType != "" || b2.CacheKey != "" || b2.TTLSeconds != 0 || b2.Stream {
		t.Errorf("zero-valued session = %+v (returned %+v)", b2, got2)
	}
	if got2.ID == got.ID {
		t.Error("two sessions got the same id")
	}

	// An empty file: one chunk of 0 bytes, no multipart upload.
	m, sha, size, count := testManifest("empty", "", 0)
	in3 := newSession(a, "")
	in3.Manifest, in3.SHA256, in3.Size, in3.ChunkSize, in3.ChunkCount, in3.UploadID, in3.Reserved = m, sha, size, 0, count, "", 0
	got3 := mustSession(t, s, in3)
	if b3 := mustGetSession(t, s, a.ID, got3.ID); !sameSession(b3, got3) || b3.Size != 0 || b3.ChunkCount != 1 {
		t.Errorf("empty-file session = %+v (returned %+v)", b3, got3)
	}

	// A stream session.
	st := mustSession(t, s, newStreamSession(a))
	bs := mustGetSession(t, s, a.ID, st.ID)
	if !sameSession(bs, st) || !bs.Stream || bs.Manifest != nil || bs.SHA256 != "" || bs.Size != -1 || bs.ChunkCount != 0 ||
		bs.ChunkSize != 8<<20 || bs.Reserved != 500*server.MiB || bs.State != server.SessionOpen {
		t.Errorf("stream session = %+v (returned %+v)", bs, st)
	}
}

func testSessionValidation(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	cases := []struct {
		name   string
		change func(u *server.UploadSession)
		code   string
	}{
		{"no account", func(u *server.UploadSession) { u.AccountID = "" }, server.ENotFound},
		{"unknown account", func(u *server.UploadSession) { u.AccountID = "00000000-0000-0000-0000-000000000000" }, server.ENotFound},
		{"no object key", func(u *server.UploadSession) { u.ObjectKey = "" }, server.EInvalid},
		{"no manifest", func(u *server.UploadSession) { u.Manifest = nil }, server.EInvalid},
		{"manifest not JSON", func(u *server.UploadSession) { u.Manifest = []byte(`{"version": 1,`) }, server.EInvalid},
		{"manifest not UTF-8", func(u *server.UploadSession) { u.Manifest = []byte("{\"name\": \"\xff\"}") }, server.EInvalid},
		{"bad hash", func(u *server.UploadSession) { u.SHA256 = "abc" }, server.EInvalid},
		{"no hash", func(u *server.UploadSession) { u.SHA256 = "" }, server.EInvalid},
		{"size below -1", func(u *server.UploadSession) { u.Size = -2 }, server.EInvalid},
		{"no chunks", func(u *server.UploadSession) { u.ChunkCount = 0 }, server.EInvalid},
		{"negative chunk size", func(u *server.UploadSession) { u.ChunkSize = -1 }, server.EInvalid},
		{"negative reserved", func(u *server.UploadSession) { u.Reserved = -1 }, server.EInvalid},
		{"negative ttl", func(u *server.UploadSession) { u.TTLSeconds = -1 }, server.EInvalid},
		{"no expiry", func(u *server.UploadSession) { u.ExpiresAt = time.Time{} }, server.EInvalid},
		{"content type too long", func(u *server.UploadSession) { u.ContentType = strings.Repeat("x", 101) }, server.EInvalid},
		{"file name with NUL", func(u *server.UploadSession) { u.Filename = "a\x00b" }, server.EInvalid},
		{"stream with hash", func(u *server.UploadSession) { u.Size, u.Manifest, u.ChunkCount = -1, nil, 0 }, server.EInvalid},
		{"stream with manifest", func(u *server.UploadSession) { u.Size, u.SHA256, u.ChunkCount = -1, "", 0 }, server.EInvalid},
		{"stream with chunks", func(u *server.UploadSession) { u.Size, u.SHA256, u.Manifest = -1, "", nil }, server.EInvalid},
	}
	for _, c := range cases {
		u := newSession(a, "validation")
		c.change(&u)
		_, err := s.CreateSession(ctx, u)
		if server.ErrorCode(err) != c.code {
			t.Errorf("%s: CreateSession error %v, want code %s", c.name, err, c.code)
		}
	}
}

func testSessionIsolation(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	b := mustCreate(t, s, "pro")
	u := mustSession(t, s, newSession(a, "isolated"))

	_, err := s.SessionByID(ctx, b.ID, u.ID)
	wantCode(t, err, server.ENotFound)
	_, err = s.SessionByID(ctx, "", u.ID)
	wantCode(t, err, server.ENotFound)
	_, _, err = s.BeginCompletion(ctx, b.ID, u.ID, time.Now(), testLease)
	wantCode(t, err, server.ENotFound)
	_, err = s.AbortSession(ctx, b.ID, u.ID)
	wantCode(t, err, server.ENotFound)
	if _, err := s.OpenSessionFor(ctx, b.ID, u.SHA256, u.Size, time.Now()); server.ErrorCode(err) != server.ENotFound {
		t.Errorf("OpenSessionFor of another account: %v, want not found", err)
	}
	wantState(t, s, a.ID, u.ID, server.SessionOpen)

	missing := server.NewSessionID()
	for _, id := range []string{"", "ses_", "nope", missing, strings.ToUpper(u.ID), u.ID + "a", u.ID[:29], "ses_\xff\xfe", "ses_\x00", u.ID + "\x00"} {
		if _, err := s.SessionByID(ctx, a.ID, id); server.ErrorCode(err) != server.ENotFound {
			t.Errorf("SessionByID(%q): %v, want not found", id, err)
		}
		if _, _, err := s.BeginCompletion(ctx, a.ID, id, time.Now(), testLease); server.ErrorCode(err) != server.ENotFound {
			t.Errorf("BeginCompletion(%q): %v, want not found", id, err)
		}
		if _, err := s.AbortSession(ctx, a.ID, id); server.ErrorCode(err) != server.ENotFound {
			t.Errorf("AbortSession(%q): %v, want not found", id, err)
		}
		if err := s.FinishCompletion(ctx, id, "asset", false); server.ErrorCode(err) != server.ENotFound {
			t.Errorf("FinishCompletion(%q): %v, want not found", id, err)
		}
		if err := s.FailCompletion(ctx, id); server.ErrorCode(err) != server.ENotFound {
			t.Errorf("FailCompletion(%q): %v, want not found", id, err)
		}
		m, sha, size, count := testManifest("x", "x", 1)
		if err := s.SetSessionManifest(ctx, id, m, sha, size, count); server.ErrorCode(err) != server.ENotFound {
			t.Errorf("SetSessionManifest(%q): %v, want not found", id, err)
		}
	}
	for _, acct := range []string{"", "\xff", "x\x00"} {
		if _, err := s.SessionByID(ctx, acct, u.ID); server.ErrorCode(err) != server.ENotFound {
			t.Errorf("SessionByID(account %q): %v, want not found", acct, err)
		}
	}
}

// testOpenSessionByRef: a stream session's client ref finds it again
// while it is open or completing and unexpired, in its account only; a
// ref on a session with a manifest, or a malformed one, is refused.
func testOpenSessionByRef(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	b := mustCreate(t, s, "pro")
	const ref = "ref_0123456789abcdef"
	now := time.Now().UTC().Truncate(time.Microsecond)
	if _, err := s.OpenSessionByRef(ctx, a.ID, ref, now); server.ErrorCode(err) != server.ENotFound {
		t.Fatalf("OpenSessionByRef without sessions: %v, want not found", err)
	}
	withRef := newStreamSession(a)
	withRef.ClientRef = ref
	created := mustSession(t, s, withRef)
	if created.ClientRef != ref {
		t.Fatalf("created with client ref %q", created.ClientRef)
	}
	other := newStreamSession(b)
	other.ClientRef = ref
	mustSession(t, s, other) // the same ref in another account
	mustSession(t, s, newStreamSession(a))
	got, err := s.OpenSessionByRef(ctx, a.ID, ref, now)
	if err != nil || got.ID != created.ID || got.ClientRef != ref || !sameSession(got, mustGetSession(t, s, a.ID, created.ID)) {
		t.Fatalf("OpenSessionByRef = %+v, %v; want %s", got, err, created.ID)
	}
	if _, err := s.OpenSessionByRef(ctx, a.ID, ref, created.ExpiresAt.Add(time.Second)); server.ErrorCode(err) != server.ENotFound {
		t.Errorf("OpenSessionByRef after expiry: %v, want not found", err)
	}
	for _, bad := range []string{"", "short", ref + "!", strings.Repeat("a", 65)} {
		if _, err := s.OpenSessionByRef(ctx, a.ID, bad, now); server.ErrorCode(err) != server.ENotFound {
			t.Errorf("OpenSessionByRef(%q): %v, want not found", bad, err)
		}
	}
	if _, err := s.AbortSession(ctx, a.ID, created.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenSessionByRef(ctx, a.ID, ref, now); server.ErrorCode(err) != server.ENotFound {
		t.Errorf("OpenSessionByRef of an aborted session: %v, want not found", err)
	}
	manifest := newSession(a, "with a manifest")
	manifest.ClientRef = ref
	if _, err := s.CreateSession(ctx, manifest); server.ErrorCode(err) != server.EInvalid {
		t.Errorf("a client ref on a session with a manifest: %v, want invalid", err)
	}
	bad := newStreamSession(a)
	bad.ClientRef = "no spaces allowed here"
	if _, err := s.CreateSession(ctx, bad); server.ErrorCode(err) != server.EInvalid {
		t.Errorf("a malformed client ref: %v, want invalid", err)
	}
}

func testOpenSessionFor(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	b := mustCreate(t, s, "pro")
	content := "resumable content"
	now := time.Now().UTC().Truncate(time.Microsecond)
	create := func(acct server.Account, change func(u *server.UploadSession)) server.UploadSession {
		t.Helper()
		time.Sleep(2 * time.Millisecond) // distinct creation times
		u := newSession(acct, content)
		if change != nil {
			change(&u)
		}
		return mustSession(t, s, u)
	}
	find := func(acct server.Account, sha string, size int64, at time.Time) (server.UploadSession, error) {
		return s.OpenSessionFor(ctx, acct.ID, sha, size, at)
	}
	sha, size := hashOf(content), int64(len(content))

	if _, err := find(a, sha, size, now); server.ErrorCode(err) != server.ENotFound {
		t.Fatalf("OpenSessionFor without sessions: %v, want not found", err)
	}
	older := create(a, func(u *server.UploadSession) { u.ExpiresAt = now.Add(3 * time.Hour) })
	newer := create(a, func(u *server.UploadSession) { u.ExpiresAt = now.Add(2 * time.Hour) })
	// Newer still, but each disqualified.
	create(a, func(u *server.UploadSession) { u.ExpiresAt = now.Add(time.Hour) }) // expires first
	completed := create(a, nil)
	mustBegin(t, s, a.ID, completed.ID)
	if err := s.FinishCompletion(ctx, completed.ID, "asset-1", false); err != nil {
		t.Fatal(err)
	}
	aborted := create(a, nil)
	if _, err := s.AbortSession(ctx, a.ID, aborted.ID); err != nil {
		t.Fatal(err)
	}
	otherSize := create(a, func(u *server.UploadSession) {
		m, sha, size, count := testManifest("x", content+"!", 4)
		u.Manifest, u.SHA256, u.Size, u.ChunkCount = m, sha, size, count
	})
	create(b, nil)                         // another account
	mustSession(t, s, newStreamSession(a)) // no hash yet

	got, err := find(a, sha, size, now.Add(90*time.Minute))
	if err != nil || got.ID != newer.ID {
		t.Fatalf("OpenSessionFor = %s, %v; want the newest unexpired open session %s", got.ID, err, newer.ID)
	}
	if !sameSession(got, mustGetSession(t, s, a.ID, newer.ID)) {
		t.Errorf("OpenSessionFor = %+v, want %+v", got, newer)
	}
	if got, err := find(a, strings.ToUpper(sha), size, now.Add(90*time.Minute)); err != nil || got.ID != newer.ID {
		t.Errorf("OpenSessionFor(upper-case hash) = %s, %v; want %s", got.ID, err, newer.ID)
	}
	// Expiry is exclusive: a session expiring at now is expired.
	if got, err := find(a, sha, size, now.Add(2*time.Hour)); err != nil || got.ID != older.ID {
		t.Errorf("OpenSessionFor after the newer one expired = %s, %v; want %s", got.ID, err, older.ID)
	}
	if _, err := find(a, sha, size, now.Add(3*time.Hour)); server.ErrorCode(err) != server.ENotFound {
		t.Errorf("OpenSessionFor after all expired: %v, want not found", err)
	}
	if got, err := find(a, otherSize.SHA256, otherSize.Size, now); err != nil || got.ID != otherSize.ID {
		t.Errorf("OpenSessionFor(other content) = %s, %v; want %s", got.ID, err, otherSize.ID)
	}
	for _, c := range []struct {
		name string
		sha  string
		size int64
	}{
		{"other size", sha, size + 1},
		{"stream", "", -1},
		{"bad hash", "xyz", size},
		{"unknown hash", hashOf("nothing"), size},
	} {
		if got, err := find(a, c.sha, c.size, now); server.ErrorCode(err) != server.ENotFound {
			t.Errorf("OpenSessionFor(%s) = %s, %v; want not found", c.name, got.ID, err)
		}
	}
	// A session being completed is still found: the resumed upload's
	// complete waits for that completion, or takes a dead one over.
	later := now.Add(90 * time.Minute) // the one expiring first has expired
	mustBegin(t, s, a.ID, newer.ID)
	if got, err := find(a, sha, size, later); err != nil || got.ID != newer.ID || got.State != server.SessionCompleting {
		t.Errorf("OpenSessionFor after a claim = %+v, %v; want %s, completing", got, err, newer.ID)
	}
	// Completed, it is not.
	if err := s.FinishCompletion(ctx, newer.ID, "asset-n", false); err != nil {
		t.Fatal(err)
	}
	if got, err := find(a, sha, size, later); err != nil || got.ID != older.ID {
		t.Errorf("OpenSessionFor after the completion = %s, %v; want %s", got.ID, err, older.ID)
	}
}

func testBeginCompletionConcurrent(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	u := mustSession(t, s, newSession(a, "claimed once"))
	const callers = 20
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		oks   = make([]bool, callers)
		errs  = make([]error, callers)
		got   = make([]server.UploadSession, callers)
	)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got[i], oks[i], errs[i] = s.BeginCompletion(ctx, a.ID, u.ID, time.Now(), testLease)
		}()
	}
	close(start)
	wg.Wait()
	winners := 0
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if got[i].ID != u.ID || got[i].State != server.SessionCompleting {
			t.Errorf("caller %d got session %s in state %s, want %s completing", i, got[i].ID, got[i].State, u.ID)
		}
		if oks[i] {
			winners++
		}
	}
	if winners != 1 {
		t.Fatalf("%d callers claimed the completion, want exactly 1", winners)
	}
	wantState(t, s, a.ID, u.ID, server.SessionCompleting)

	// After a failed attempt the claim is exclusive again.
	if err := s.FailCompletion(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	var claims int
	var mu sync.Mutex
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ok, err := s.BeginCompletion(ctx, a.ID, u.ID, time.Now(), testLease)
			if err != nil {
				t.Errorf("BeginCompletion: %v", err)
			}
			if ok {
				mu.Lock()
				claims++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if claims != 1 {
		t.Fatalf("%d callers claimed the second attempt, want exactly 1", claims)
	}
}

func testCompletionTransitions(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")

	// open → completing → completed.
	u := mustSession(t, s, newSession(a, "transitions"))
	wantCode(t, s.FinishCompletion(ctx, u.ID, "asset-1", false), server.EConflict)
	wantCode(t, s.FailCompletion(ctx, u.ID), server.EConflict)
	time.Sleep(2 * time.Millisecond)
	c := mustBegin(t, s, a.ID, u.ID)
	if !c.UpdatedAt.After(u.UpdatedAt) || !c.CreatedAt.Equal(u.CreatedAt) {
		t.Errorf("BeginCompletion: UpdatedAt %v (was %v), CreatedAt %v (was %v)", c.UpdatedAt, u.UpdatedAt, c.CreatedAt, u.CreatedAt)
	}
	again, ok, err := s.BeginCompletion(ctx, a.ID, u.ID, time.Now(), testLease)
	if err != nil || ok || !sameSession(again, c) {
		t.Fatalf("second BeginCompletion = %+v, %v, %v; want the completing session unchanged, false", again, ok, err)
	}
	wantCode(t, s.FinishCompletion(ctx, u.ID, "", false), server.EInvalid)
	wantState(t, s, a.ID, u.ID, server.SessionCompleting)
	if err := s.FinishCompletion(ctx, u.ID, "asset-1", true); err != nil {
		t.Fatalf("FinishCompletion: %v", err)
	}
	done := wantState(t, s, a.ID, u.ID, server.SessionCompleted)
	if done.AssetID != "asset-1" || !done.Deduplicated {
		t.Errorf("completed session: asset %q, deduplicated %v; want asset-1, true", done.AssetID, done.Deduplicated)
	}
	want := c
	want.State, want.AssetID, want.Deduplicated, want.UpdatedAt = server.SessionCompleted, "asset-1", true, done.UpdatedAt
	want.LeaseUntil = time.Time{} // a lease belongs to state completing
	if !sameSession(done, want) {
		t.Errorf("completed session = %+v\nwant %+v", done, want)
	}
	got, ok, err := s.BeginCompletion(ctx, a.ID, u.ID, time.Now(), testLease)
	if err != nil || ok || !sameSession(got, done) {
		t.Errorf("BeginCompletion of a completed session = %+v, %v, %v; want it unchanged, false", got, ok, err)
	}
	// Completed sessions answer later calls, even after expiry.
	got, ok, err = s.BeginCompletion(ctx, a.ID, u.ID, u.ExpiresAt.Add(time.Hour), testLease)
	if err != nil || ok || got.State != server.SessionCompleted {
		t.Errorf("BeginCompletion of a completed session after expiry = %s, %v, %v", got.State, ok, err)
	}
	wantCode(t, s.FinishCompletion(ctx, u.ID, "asset-2", false), server.EConflict)
	wantCode(t, s.FailCompletion(ctx, u.ID), server.EConflict)
	if d := wantState(t, s, a.ID, u.ID, server.SessionCompleted); d.AssetID != "asset-1" {
		t.Errorf("a refused FinishCompletion changed the asset to %q", d.AssetID)
	}

	// open → completing → open (failed) → completing → completed.
	v := mustSession(t, s, newSession(a, "retry"))
	mustBegin(t, s, a.ID, v.ID)
	if err := s.FailCompletion(ctx, v.ID); err != nil {
		t.Fatalf("FailCompletion: %v", err)
	}
	back := wantState(t, s, a.ID, v.ID, server.SessionOpen)
	if back.AssetID != "" || back.Deduplicated {
		t.Errorf("failed completion left asset %q, deduplicated %v", back.AssetID, back.Deduplicated)
	}
	wantCode(t, s.FailCompletion(ctx, v.ID), server.EConflict)
	mustBegin(t, s, a.ID, v.ID)
	if err := s.FinishCompletion(ctx, v.ID, "asset-3", false); err != nil {
		t.Fatal(err)
	}
	if d := wantState(t, s, a.ID, v.ID, server.SessionCompleted); d.AssetID != "asset-3" || d.Deduplicated {
		t.Errorf("completed after a retry: asset %q, deduplicated %v", d.AssetID, d.Deduplicated)
	}
}

func testAbortSession(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")

	u := mustSession(t, s, newSession(a, "abort me"))
	time.Sleep(2 * time.Millisecond)
	ab, err := s.AbortSession(ctx, a.ID, u.ID)
	if err != nil || ab.State != server.SessionAborted || ab.ID != u.ID || !ab.UpdatedAt.After(u.UpdatedAt) {
		t.Fatalf("AbortSession = %+v, %v", ab, err)
	}
	if got := mustGetSession(t, s, a.ID, u.ID); !sameSession(got, ab) {
		t.Errorf("after abort: %+v, want %+v", got, ab)
	}
	// Idempotent: the same answer, nothing changed.
	again, err := s.AbortSession(ctx, a.ID, u.ID)
	if err != nil || !sameSession(again, ab) {
		t.Errorf("second AbortSession = %+v, %v; want %+v", again, err, ab)
	}
	// An aborted session cannot be completed.
	got, ok, err := s.BeginCompletion(ctx, a.ID, u.ID, time.Now(), testLease)
	if err != nil || ok || got.State != server.SessionAborted {
		t.Errorf("BeginCompletion of an aborted session = %s, %v, %v; want aborted, false", got.State, ok, err)
	}
	wantCode(t, s.FinishCompletion(ctx, u.ID, "asset", false), server.EConflict)
	wantCode(t, s.FailCompletion(ctx, u.ID), server.EConflict)
	if _, err := s.OpenSessionFor(ctx, a.ID, u.SHA256, u.Size, time.Now()); server.ErrorCode(err) != server.ENotFound {
		t.Errorf("OpenSessionFor found an aborted session: %v", err)
	}

	// Completing and completed sessions cannot be aborted.
	v := mustSession(t, s, newSession(a, "being completed"))
	mustBegin(t, s, a.ID, v.ID)
	_, err = s.AbortSession(ctx, a.ID, v.ID)
	wantCode(t, err, server.EConflict)
	wantState(t, s, a.ID, v.ID, server.SessionCompleting)
	if err := s.FinishCompletion(ctx, v.ID, "asset-v", false); err != nil {
		t.Fatal(err)
	}
	_, err = s.AbortSession(ctx, a.ID, v.ID)
	wantCode(t, err, server.EConflict)
	wantState(t, s, a.ID, v.ID, server.SessionCompleted)

	// A completion that failed can be aborted; so can an expired session.
	w := mustSession(t, s, newSession(a, "failed then aborted"))
	mustBegin(t, s, a.ID, w.ID)
	if err := s.FailCompletion(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := s.AbortSession(ctx, a.ID, w.ID); err != nil || got.State != server.SessionAborted {
		t.Errorf("AbortSession after a failed completion = %s, %v", got.State, err)
	}
	x := newSession(a, "expired")
	x.ExpiresAt = time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	xs := mustSession(t, s, x)
	if got, err := s.AbortSession(ctx, a.ID, xs.ID); err != nil || got.State != server.SessionAborted {
		t.Errorf("AbortSession of an expired session = %s, %v", got.State, err)
	}

	// Concurrent aborts all succeed with the same aborted session.
	y := mustSession(t, s, newSession(a, "aborted concurrently"))
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := s.AbortSession(ctx, a.ID, y.ID); err != nil || got.State != server.SessionAborted {
				t.Errorf("concurrent AbortSession = %s, %v", got.State, err)
			}
		}()
	}
	wg.Wait()
}

func testBeginCompletionExpired(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	in := newSession(a, "expiring")
	in.ExpiresAt = time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	u := mustSession(t, s, in)

	for _, at := range []time.Time{u.ExpiresAt, u.ExpiresAt.Add(time.Second), u.ExpiresAt.Add(48 * time.Hour)} {
		_, ok, err := s.BeginCompletion(ctx, a.ID, u.ID, at, testLease)
		if ok || server.ErrorCode(err) != server.EGone {
			t.Errorf("BeginCompletion at %v (expiry %v) = %v, %v; want %s", at, u.ExpiresAt, ok, err, server.EGone)
		}
	}
	if got := wantState(t, s, a.ID, u.ID, server.SessionOpen); !sameSession(got, u) {
		t.Errorf("a refused BeginCompletion changed the session: %+v", got)
	}
	if !u.Expired(u.ExpiresAt) || u.Expired(u.ExpiresAt.Add(-time.Microsecond)) {
		t.Errorf("Expired disagrees with BeginCompletion about expiry at %v", u.ExpiresAt)
	}
	// Just before expiry the claim succeeds.
	got, ok, err := s.BeginCompletion(ctx, a.ID, u.ID, u.ExpiresAt.Add(-time.Microsecond), testLease)
	if err != nil || !ok || got.State != server.SessionCompleting {
		t.Fatalf("BeginCompletion before expiry = %s, %v, %v", got.State, ok, err)
	}
	// A completing session under its lease is not gone: its completion is
	// under way, past the expiry too.
	got, ok, err = s.BeginCompletion(ctx, a.ID, u.ID, u.ExpiresAt.Add(time.Minute), testLease)
	if err != nil || ok || got.State != server.SessionCompleting {
		t.Errorf("BeginCompletion of a completing session after expiry = %s, %v, %v", got.State, ok, err)
	}
	// Its lease run out past the expiry, nobody may take it over: gone.
	_, ok, err = s.BeginCompletion(ctx, a.ID, u.ID, u.ExpiresAt.Add(2*testLease), testLease)
	if ok || server.ErrorCode(err) != server.EGone {
		t.Errorf("BeginCompletion of a dead completion after expiry = %v, %v; want %s", ok, err, server.EGone)
	}
	// Failed back to open after its expiry: gone.
	if err := s.FailCompletion(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.BeginCompletion(ctx, a.ID, u.ID, u.ExpiresAt.Add(time.Hour), testLease)
	wantCode(t, err, server.EGone)
}

func testStreamSession(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	u := mustSession(t, s, newStreamSession(a))
	content := "streamed content of a length nobody knew"
	m, sha, size, count := testManifest("build.tar", content, 8)

	// Only while completing.
	wantCode(t, s.SetSessionManifest(ctx, u.ID, m, sha, size, count), server.EConflict)
	mustBegin(t, s, a.ID, u.ID)
	for _, c := range []struct {
		name  string
		m     []byte
		sha   string
		size  int64
		count int
	}{
		{"no manifest", nil, sha, size, count},
		{"not JSON", []byte("{"), sha, size, count},
		{"bad hash", m, "xyz", size, count},
		{"negative size", m, sha, -1, count},
		{"no chunks", m, sha, size, 0},
		{"too many chunks", m, sha, size, 10001},
	} {
		wantCode(t, s.SetSessionManifest(ctx, u.ID, c.m, c.sha, c.size, c.count), server.EInvalid)
	}
	if got := wantState(t, s, a.ID, u.ID, server.SessionCompleting); got.Manifest != nil || got.Size != -1 {
		t.Fatalf("a refused SetSessionManifest changed the session: %+v", got)
	}
	if err := s.SetSessionManifest(ctx, u.ID, m, strings.ToUpper(sha), size, count); err != nil {
		t.Fatalf("SetSessionManifest: %v", err)
	}
	got := wantState(t, s, a.ID, u.ID, server.SessionCompleting)
	if string(got.Manifest) != string(m) || got.SHA256 != sha || got.Size != size || got.ChunkCount != count ||
		!got.Stream || got.ChunkSize != u.ChunkSize || got.Reserved != u.Reserved || got.ReservationID != u.ReservationID {
		t.Fatalf("after SetSessionManifest: %+v", got)
	}
	var parsed struct {
		Chunks []json.RawMessage `json:"chunks"`
	}
	if err := json.Unmarshal(got.Manifest, &parsed); err != nil || len(parsed.Chunks) != count {
		t.Errorf("stored manifest does not parse back: %v (%d chunks)", err, len(parsed.Chunks))
	}

	// A failed attempt keeps the manifest; the next attempt may replace it.
	if err := s.FailCompletion(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if got := wantState(t, s, a.ID, u.ID, server.SessionOpen); string(got.Manifest) != string(m) || !got.Stream {
		t.Errorf("failed completion lost the manifest: %+v", got)
	}
	wantCode(t, s.SetSessionManifest(ctx, u.ID, m, sha, size, count), server.EConflict)
	mustBegin(t, s, a.ID, u.ID)
	content2 := content + " and a bit more"
	m2, sha2, size2, count2 := testManifest("build.tar", content2, 8)
	if err := s.SetSessionManifest(ctx, u.ID, m2, sha2, size2, count2); err != nil {
		t.Fatalf("second SetSessionManifest: %v", err)
	}
	if err := s.FinishCompletion(ctx, u.ID, "asset-s", false); err != nil {
		t.Fatal(err)
	}
	done := wantState(t, s, a.ID, u.ID, server.SessionCompleted)
	if string(done.Manifest) != string(m2) || done.SHA256 != sha2 || done.Size != size2 || done.ChunkCount != count2 || done.AssetID != "asset-s" {
		t.Errorf("completed stream session: %+v", done)
	}
	wantCode(t, s.SetSessionManifest(ctx, u.ID, m2, sha2, size2, count2), server.EConflict)

	// A session opened with a manifest never takes another.
	v := mustSession(t, s, newSession(a, "has a manifest"))
	mustBegin(t, s, a.ID, v.ID)
	wantCode(t, s.SetSessionManifest(ctx, v.ID, m, sha, size, count), server.EConflict)
	if got := mustGetSession(t, s, a.ID, v.ID); string(got.Manifest) != string(v.Manifest) || got.SHA256 != v.SHA256 {
		t.Errorf("SetSessionManifest changed a manifest session: %+v", got)
	}
}

// testCompletionLease: a completion whose completer died (its lease ran
// out) is taken over by the next BeginCompletion and may be aborted; a
// live one is neither. OpenSessionFor finds both.
func testCompletionLease(t *testing.T, s server.Store) {
	ctx := ctxFor(t)
	a := mustCreate(t, s, "pro")
	u := mustSession(t, s, newSession(a, "a completion that dies"))
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	const lease = time.Minute

	wantCode(t, s.RenewCompletion(ctx, u.ID, t0.Add(lease)), server.EConflict) // open: nothing to renew
	c, ok, err := s.BeginCompletion(ctx, a.ID, u.ID, t0, lease)
	if err != nil || !ok || !c.LeaseUntil.Equal(t0.Add(lease)) {
		t.Fatalf("BeginCompletion = %v, %v, lease until %v; want true, %v", ok, err, c.LeaseUntil, t0.Add(lease))
	}
	if got := mustGetSession(t, s, a.ID, u.ID); !got.LeaseUntil.Equal(c.LeaseUntil) || got.CompletionDead(t0.Add(lease-time.Second)) || !got.CompletionDead(t0.Add(lease)) {
		t.Fatalf("stored lease %v (CompletionDead before/at its end: %v/%v)", got.LeaseUntil, got.CompletionDead(t0.Add(lease-time.Second)), got.CompletionDead(t0.Add(lease)))
	}
	// Under the lease: no takeover; a resumed upload finds the session
	// (its complete will wait for this completion).
	if got, ok, err := s.BeginCompletion(ctx, a.ID, u.ID, t0.Add(lease-time.Second), lease); err != nil || ok || !got.LeaseUntil.Equal(c.LeaseUntil) {
		t.Errorf("BeginCompletion under a live lease = %v, %v (lease %v)", ok, err, got.LeaseUntil)
	}
	if got, err := s.OpenSessionFor(ctx, a.ID, u.SHA256, u.Size, t0.Add(lease-time.Second)); err != nil || got.ID != u.ID {
		t.Errorf("OpenSessionFor under a live completion = %s, %v; want %s", got.ID, err, u.ID)
	}
	// Renewed, the lease holds longer.
	if err := s.RenewCompletion(ctx, u.ID, t0.Add(3*lease)); err != nil {
		t.Fatalf("RenewCompletion: %v", err)
	}
	if _, ok, err := s.BeginCompletion(ctx, a.ID, u.ID, t0.Add(2*lease), lease); err != nil || ok {
		t.Errorf("BeginCompletion under a renewed lease = %v, %v; want false", ok, err)
	}
	// Past it, the completion is dead: a resumed upload finds the session
	// and the next BeginCompletion takes it over, exactly one of many.
	dead := t0.Add(3 * lease)
	if got, err := s.OpenSessionFor(ctx, a.ID, u.SHA256, u.Size, dead); err != nil || got.ID != u.ID {
		t.Errorf("OpenSessionFor of a dead completion = %s, %v; want %s", got.ID, err, u.ID)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		claims int
	)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, ok, err := s.BeginCompletion(ctx, a.ID, u.ID, dead, lease)
			if err != nil {
				t.Errorf("concurrent takeover: %v", err)
				return
			}
			if got.State != server.SessionCompleting {
				t.Errorf("concurrent takeover left the session %s", got.State)
			}
			if ok {
				mu.Lock()
				claims++
				mu.Unlock()
				if !got.LeaseUntil.Equal(dead.Add(lease)) {
					t.Errorf("takeover lease until %v, want %v", got.LeaseUntil, dead.Add(lease))
				}
			}
		}()
	}
	wg.Wait()
	if claims != 1 {
		t.Errorf("%d of 10 concurrent BeginCompletion took the dead completion over; want exactly 1", claims)
	}
	// The taken-over completion finishes normally; the lease goes with
	// the state.
	if err := s.FinishCompletion(ctx, u.ID, "asset-lease", false); err != nil {
		t.Fatal(err)
	}
	if got := wantState(t, s, a.ID, u.ID, server.SessionCompleted); !got.LeaseUntil.IsZero() {
		t.Errorf("a completed session keeps a lease: %v", got.LeaseUntil)
	}

	// FailCompletion drops the lease too.
	v := mustSession(t, s, newSession(a, "fails"))
	mustBegin(t, s, a.ID, v.ID)
	if err := s.FailCompletion(ctx, v.ID); err != nil {
		t.Fatal(err)
	}
	if got := wantState(t, s, a.ID, v.ID, server.SessionOpen); !got.LeaseUntil.IsZero() {
		t.Errorf("an open session keeps a lease: %v", got.LeaseUntil)
	}

	// A dead completion can be aborted (the store's own clock decides);
	// a live one cannot.
	w := mustSession(t, s, newSession(a, "dies, then aborted"))
	if _, ok, err := s.BeginCompletion(ctx, a.ID, w.ID, time.Now(), time.Millisecond); err != nil || !ok {
		t.Fatalf("BeginCompletion: %v, %v", ok, err)
	}
	time.Sleep(20 * time.Millisecond)
	if got, err := s.AbortSession(ctx, a.ID, w.ID); err != nil || got.State != server.SessionAborted || !got.LeaseUntil.IsZero() {
		t.Errorf("AbortSession of a dead completion = %s (lease %v), %v; want aborted", got.State, got.LeaseUntil, err)
	}
	x := mustSession(t, s, newSession(a, "live, not aborted"))
	mustBegin(t, s, a.ID, x.ID)
	_, err = s.AbortSession(ctx, a.ID, x.ID)
	wantCode(t, err, server.EConflict)
	wantCode(t, s.RenewCompletion(ctx, u.ID, dead.Add(lease)), server.EConflict) // completed: nothing to renew
}
