package s3blob_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/blob/s3blob"
)

func randBytes(seed uint64, n int) []byte {
	var key [32]byte
	key[0] = byte(seed)
	b := make([]byte, n)
	_, _ = io.ReadFull(rand.NewChaCha8(key), b)
	return b
}

// A MinIO whose drive is full (a small tmpfs, filled): parts, single
// Puts and multipart Puts fail with blob.ErrNoSpace; the upload keeps
// what it had; once space is freed the same calls succeed.
func TestFullStorage(t *testing.T) {
	mnt := testenv.SmallFS(t, 96<<20)
	env := testenv.MinIOOn(t, filepath.Join(mnt, "data"))
	s := newStore(t, config(env))
	ctx := t.Context()
	if err := s.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	const key = "full/obj"
	id, err := s.CreateUpload(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	p1 := randBytes(1, 5<<20)
	s1 := sha256.Sum256(p1)
	part1, err := s.PutPart(ctx, key, id, 1, bytes.NewReader(p1), int64(len(p1)), s1[:])
	if err != nil {
		t.Fatal(err)
	}
	unfill := testenv.Fill(t, mnt, 1<<20)
	testenv.WaitMinIOFull(t, env)

	p2 := randBytes(2, 5<<20)
	s2 := sha256.Sum256(p2)
	// MinIO refuses with 507 before reading the part, and the store's
	// client waits for its "100 Continue": the refusal is read, never a
	// reset (TestRefusalBeforeBodyIsRead).
	_, err = s.PutPart(ctx, key, id, 2, bytes.NewReader(p2), int64(len(p2)), s2[:])
	if !errors.Is(err, blob.ErrNoSpace) {
		t.Fatalf("PutPart on a full MinIO: %v, want ErrNoSpace", err)
	}
	t.Logf("PutPart: %v", err)
	if parts, err := s.ListParts(ctx, key, id); err != nil || len(parts) != 1 || parts[0].Number != 1 {
		t.Errorf("ListParts after the refusal = %+v, %v; want part 1 only", parts, err)
	}
	small := randBytes(3, 3<<20)
	if _, _, err := s.Put(ctx, "full/single", bytes.NewReader(small), int64(len(small)), ""); !errors.Is(err, blob.ErrNoSpace) {
		t.Errorf("Put on a full MinIO: %v, want ErrNoSpace", err)
	} else {
		t.Logf("Put: %v", err)
	}
	if _, err := s.Stat(ctx, "full/single"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("refused Put left an object: %v", err)
	}
	unfill()

	// MinIO caches its drives' free space for a moment (and may reset a
	// pooled connection it closed after refusing a body unread).
	var part2 blob.Part
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		part2, err = s.PutPart(ctx, key, id, 2, bytes.NewReader(p2), int64(len(p2)), s2[:])
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("PutPart once space is back: %v", err)
	}
	if _, _, err := s.Put(ctx, "full/single", bytes.NewReader(small), int64(len(small)), ""); err != nil {
		t.Errorf("Put once space is back: %v", err)
	}
	// MinIO completes in place (the parts become the object), so even
	// with no byte free it may succeed; if it refuses, it says full.
	unfill = testenv.Fill(t, mnt, 0)
	_, err = s.CompleteUpload(ctx, key, id, []blob.Part{part1, part2})
	t.Logf("CompleteUpload with no byte free: %v", err)
	unfill()
	if err != nil {
		if !errors.Is(err, blob.ErrNoSpace) {
			t.Fatalf("CompleteUpload on a full MinIO: %v, want ErrNoSpace", err)
		}
		if _, err := s.CompleteUpload(ctx, key, id, []blob.Part{part1, part2}); err != nil {
			t.Fatalf("CompleteUpload once space is back: %v", err)
		}
	}
	if info, err := s.Stat(ctx, key); err != nil || info.Size != 10<<20 {
		t.Errorf("completed object: %+v, %v", info, err)
	}
}

// What S3 backends answer when their storage is full, as MinIO words it
// (a part that hit ENOSPC on a single drive is a 500 whose message says
// so), and answers that are not: a logic test against canned answers.
func TestFullAnswersAreNoSpace(t *testing.T) {
	for _, c := range []struct {
		status    int
		code, msg string
		noSpace   bool
	}{
		{500, "InternalError", "We encountered an internal error, please try again.: cause(no space left on device)", true},
		{507, "XMinioStorageFull", "Storage backend has reached its minimum free drive threshold. Please delete a few objects to proceed.", true},
		{507, "SomethingElse", "full", true},
		{403, "QuotaExceeded", "bucket quota exceeded", true},
		{400, "XMinioAdminBucketQuotaExceeded", "Bucket quota exceeded", true},
		{500, "InternalError", "We encountered an internal error, please try again.", false},
		{503, "SlowDown", "Please reduce your request rate.", false},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(c.status)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, c.code, c.msg)
		}))
		s := newStore(t, s3blob.Config{Endpoint: srv.URL, Region: "us-east-1", AccessKeyID: "k", SecretAccessKey: "s", Bucket: "b"})
		b := []byte("part")
		sum := sha256.Sum256(b)
		_, err := s.PutPart(t.Context(), "k/x", "upload", 1, bytes.NewReader(b), int64(len(b)), sum[:])
		if got := errors.Is(err, blob.ErrNoSpace); got != c.noSpace {
			t.Errorf("%d %s %q: ErrNoSpace = %v (%v)", c.status, c.code, c.msg, got, err)
		}
		srv.Close()
	}
}

// A store that refuses a part before reading its body (MinIO's 507 on a
// full drive answers at once and closes): the store's client sends the
// headers with "Expect: 100-continue", waits, and reads the refusal; no
// body byte is sent. The server here is raw TCP so the test sees what
// arrives: it waits half a second after the headers for body bytes, then
// answers 507 and resets the connection (SO_LINGER 0), as an early close
// with unread data does. Before the fix the SDK's requests carried no
// protocol version, Go's transport then ignored the Expect header and
// sent the body at once: the server saw it, and the answer was a reset.
func TestRefusalBeforeBodyIsRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type seen struct {
		expect   string
		bodySent int
	}
	got := make(chan seen, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				n, _ := io.Copy(io.Discard, br)
				got <- seen{req.Header.Get("Expect"), int(n)}
				body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>XMinioStorageFull</Code><Message>Storage backend has reached its minimum free drive threshold. Please delete a few objects to proceed.</Message></Error>`
				fmt.Fprintf(c, "HTTP/1.1 507 Insufficient Storage\r\nContent-Type: application/xml\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
				c.(*net.TCPConn).SetLinger(0)
			}(c)
		}
	}()
	s := newStore(t, s3blob.Config{Endpoint: "http://" + ln.Addr().String(), Region: "us-east-1", AccessKeyID: "k", SecretAccessKey: "s", Bucket: "b"})
	part := randBytes(5, 5<<20)
	sum := sha256.Sum256(part)
	_, err = s.PutPart(t.Context(), "k/x", "upload", 1, bytes.NewReader(part), int64(len(part)), sum[:])
	if !errors.Is(err, blob.ErrNoSpace) {
		t.Errorf("PutPart refused before its body was read: %v; want ErrNoSpace", err)
	}
	if sw := <-got; sw.expect != "100-continue" || sw.bodySent != 0 {
		t.Errorf("the store saw Expect %q and %d body bytes before it answered; want 100-continue and none", sw.expect, sw.bodySent)
	}
}
