package relay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/app"
	"github.com/jettythunder/jetty/server/blob/s3blob"
	"github.com/jettythunder/jetty/server/uploadtoken"
)

// chunkReq is one chunk PUT, as raw as a client can make it.
type chunkReq struct {
	session string // the id in the path
	index   string // the index in the path, as written
	token   string // "": no upload token
	sum     string // X-Chunk-SHA256; noHeader: none
	body    []byte
	size    int64 // Content-Length; -1: none (chunked)
}

const noHeader = "\x00"

// send PUTs c to base and returns the status and the code of the answer.
func (c chunkReq) send(t *testing.T, base string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, base+protocol.PathSessions+"/"+c.session+"/chunks/"+c.index, bytes.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = c.size
	if c.size == 0 {
		req.Body = http.NoBody
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.sum != noHeader {
		req.Header.Set(protocol.HeaderChunkSHA256, c.sum)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{status: -1, code: err.Error()}
	}
	defer res.Body.Close()
	return answerOf(t, res)
}

func answerOf(t *testing.T, res *http.Response) answer {
	t.Helper()
	var b protocol.ErrorBody
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		if err := json.Unmarshal(raw, &b); err != nil || b.Error == "" {
			t.Errorf("HTTP %d with a body that is no error body: %q", res.StatusCode, raw)
		}
	}
	return answer{status: res.StatusCode, code: b.Code}
}

// stall sends the head of a chunk PUT and its first bytes, then nothing,
// and returns the answer.
func stall(t *testing.T, base string, c chunkReq) answer {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT %s/%s/chunks/%s HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer %s\r\n%s: %s\r\nContent-Length: %d\r\n\r\n",
		protocol.PathSessions, c.session, c.index, c.token, protocol.HeaderChunkSHA256, c.sum, c.size)
	conn.Write(c.body[:1000])
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return answer{status: -1, code: err.Error()}
	}
	defer res.Body.Close()
	return answerOf(t, res)
}

// TestAdmissionSameEverywhere: every refusal of a chunk PUT gets the same
// status and code from the origin and from a relay, forwarding to an
// origin that keeps files and writing parts to S3 (MinIO) itself: the
// admission is written once (server/chunkadmit) and answered through the
// one status map (protocol.StatusFor). Each case is sent to the origin,
// then to the relay; both answers must equal the one expected. Nothing
// refused is stored.
func TestAdmissionSameEverywhere(t *testing.T) {
	const idle = 2 * time.Second // a chunk body's longest silence, both sides
	parity := func(t *testing.T, cfg app.Config, mod func(*Config)) {
		cfg.BodyTimeout = idle
		o := startOrigin(t, cfg)
		r := newRelay(t, o, "edge_parity", func(c *Config) {
			c.BodyIdle = idle
			if mod != nil {
				mod(c)
			}
		})
		admissionParity(t, o, serve(t, r))
	}
	t.Run("relay", func(t *testing.T) {
		parity(t, app.Config{}, nil)
	})
	t.Run("s3", func(t *testing.T) {
		m := testenv.MinIO(t)
		s3cfg := &s3blob.Config{Endpoint: m.Endpoint, Region: m.Region, AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, Bucket: m.Bucket}
		parity(t, app.Config{S3: s3cfg}, func(c *Config) { c.S3 = s3cfg })
	})
}

func admissionParity(t *testing.T, o *origin, relayURL string) {
	ctx := context.Background()
	acct := accountOf(t, o)
	real, _ := uploadtoken.NewSigner([]byte(tokenSecret))
	other, _ := uploadtoken.NewSigner([]byte("not the origin's token secret, but as long"))
	hour := time.Now().Add(time.Hour).Unix()

	// The session most cases refuse chunks of: chunks 0, 1 of 5 MiB, 2 of
	// 2 MiB + 7.
	data, _ := io.ReadAll(testenv.NewRandReader(11, 12<<20+7))
	s, m := openSession(t, o, data)
	c0, c2 := data[:5<<20], data[10<<20:]
	sum0, sum2 := m.Chunks[0].SHA256, m.Chunks[2].SHA256
	good := s.UploadToken
	wrong := bytes.Clone(c0)
	wrong[4321] ^= 0x20

	// Sessions in other states, each a file of one small chunk.
	small := func(seed byte) ([]byte, *protocol.Session, *protocol.Manifest) {
		d, _ := io.ReadAll(testenv.NewRandReader(seed, 1000))
		s, m := openSession(t, o, d)
		return d, s, m
	}
	_, otherSess, _ := small(12)
	compData, compSess, compM := small(13)
	if _, claimed, err := o.app.Store().BeginCompletion(ctx, acct, compSess.ID, time.Now(), time.Hour); err != nil || !claimed {
		t.Fatalf("begin completion: %v %v", claimed, err)
	}
	doneData, doneSess, doneM := small(14)
	if got := (chunkReq{doneSess.ID, "0", doneSess.UploadToken, doneM.Chunks[0].SHA256, doneData, 1000}).send(t, o.url); got.status != 200 {
		t.Fatalf("chunk of the session to complete: %+v", got)
	}
	if _, err := o.c.Complete(ctx, doneSess.ID); err != nil {
		t.Fatal(err)
	}
	abortData, abortSess, abortM := small(15)
	if err := o.c.Abort(ctx, abortSess.ID); err != nil {
		t.Fatal(err)
	}
	// An expired session: recorded as the origin does, with an expiry
	// already past, and a token of its own that is still valid.
	expData, _ := io.ReadAll(testenv.NewRandReader(16, 1000))
	expM := plan("expired.bin", expData, 1000)
	raw, _ := json.Marshal(expM)
	exp, err := o.app.Store().CreateSession(ctx, server.UploadSession{
		AccountID: acct, ObjectKey: "expired/" + acct, Manifest: raw, SHA256: expM.SHA256, Size: 1000,
		ChunkSize: 1000, ChunkCount: 1, Filename: "expired.bin", ExpiresAt: time.Now().Add(-time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	expTok := real.Sign(uploadtoken.Claims{SessionID: exp.ID, AccountID: acct, MaxWorkers: 32, Expires: hour})
	nosuch := "ses_" + strings.Repeat("a", 26)
	nosuchTok := real.Sign(uploadtoken.Claims{SessionID: nosuch, AccountID: acct, MaxWorkers: 32, Expires: hour})

	// For the account's refusals at the end: sessions the relay has not
	// looked up (a relay's cached lookup is good for up to 30 s).
	_, susp, suspM := small(17)
	_, gone, goneM := small(18)

	// A stream session that reserved 12 MiB (the rest of the quota is
	// taken): chunk i of 5 MiB covers bytes [5i MiB, 5i MiB + size).
	full, err := o.app.Store().AccountByUserID(ctx, "usr_relay")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.app.Store().Reserve(ctx, acct, full.StorageQuotaBytes()-full.StorageUsedBytes-full.StorageReservedBytes-12<<20, time.Hour); err != nil {
		t.Fatal(err)
	}
	opened, err := o.c.OpenSession(ctx, protocol.OpenRequest{Stream: &protocol.StreamSpec{Name: "s.tar", ChunkSize: 5 << 20}})
	if err != nil || opened.Session == nil {
		t.Fatalf("open stream: %v", err)
	}
	st := opened.Session
	if rec, err := o.app.Store().SessionByID(ctx, acct, st.ID); err != nil || rec.Reserved != 12<<20 {
		t.Fatalf("the stream reserved %d, want 12 MiB: %v", rec.Reserved, err)
	}
	one := data[:1]
	big := data[:5<<20+1]

	type tcase struct {
		name string
		req  chunkReq
		want answer
	}
	mk := func(token string, index string, sum string, body []byte) chunkReq {
		return chunkReq{s.ID, index, token, sum, body, int64(len(body))}
	}
	cases := []tcase{
		// The upload token.
		{"no token", mk("", "0", sum0, c0), answer{401, protocol.CodeTokenInvalid}},
		{"garbage token", mk("not-a-token", "0", sum0, c0), answer{401, protocol.CodeTokenInvalid}},
		{"forged token", mk(other.Sign(uploadtoken.Claims{SessionID: s.ID, AccountID: acct, MaxWorkers: 32, Expires: hour}), "0", sum0, c0), answer{401, protocol.CodeTokenInvalid}},
		{"tampered token", mk(good[:len(good)-2]+flip(good[len(good)-2:]), "0", sum0, c0), answer{401, protocol.CodeTokenInvalid}},
		{"expired token", mk(real.Sign(uploadtoken.Claims{SessionID: s.ID, AccountID: acct, MaxWorkers: 32, Expires: time.Now().Add(-time.Minute).Unix()}), "0", sum0, c0), answer{401, protocol.CodeTokenExpired}},
		{"token of another session", mk(otherSess.UploadToken, "0", sum0, c0), answer{401, protocol.CodeTokenInvalid}},
		// A token the origin signed for an account it does not know: no
		// session of that account.
		{"token of an unknown account", mk(real.Sign(uploadtoken.Claims{SessionID: s.ID, AccountID: "acc_unknown", MaxWorkers: 32, Expires: hour}), "0", sum0, c0), answer{404, protocol.CodeNotFound}},
		{"no such session", chunkReq{nosuch, "0", nosuchTok, sum0, c0, int64(len(c0))}, answer{404, protocol.CodeNotFound}},
		// The index.
		{"index not a number", mk(good, "one", sum0, c0), answer{400, protocol.CodeInvalid}},
		{"negative index", mk(good, "-1", sum0, c0), answer{400, protocol.CodeInvalid}},
		{"index past the protocol's last", mk(good, fmt.Sprint(protocol.MaxChunkIndex+1), sum0, c0), answer{400, protocol.CodeInvalid}},
		{"index beyond the manifest", mk(good, "3", sum0, c0), answer{400, protocol.CodeInvalid}},
		{"the protocol's last index, beyond the manifest", mk(good, fmt.Sprint(protocol.MaxChunkIndex), sum0, c0), answer{400, protocol.CodeInvalid}},
		// The hash header.
		{"no hash header", mk(good, "0", noHeader, c0), answer{400, protocol.CodeInvalid}},
		{"empty hash header", mk(good, "0", "", c0), answer{400, protocol.CodeInvalid}},
		{"short hash header", mk(good, "0", "abc", c0), answer{400, protocol.CodeInvalid}},
		{"hash header not hex", mk(good, "0", strings.Repeat("g", 64), c0), answer{400, protocol.CodeInvalid}},
		{"hash header too long", mk(good, "0", sum0+"00", c0), answer{400, protocol.CodeInvalid}},
		{"hash header not the manifest's", mk(good, "0", sum2, c0), answer{400, protocol.CodeChecksumMismatch}},
		// The length.
		{"no Content-Length", chunkReq{s.ID, "0", good, sum0, c0, -1}, answer{411, protocol.CodeLengthRequired}},
		{"shorter than the manifest's chunk", mk(good, "0", sum0, c0[:100]), answer{400, protocol.CodeInvalid}},
		{"larger than the manifest's chunk", mk(good, "2", sum2, data[:len(c2)+1]), answer{400, protocol.CodeInvalid}},
		{"empty, the manifest's is not", mk(good, "0", sum0, nil), answer{400, protocol.CodeInvalid}},
		// The bytes.
		{"bytes that hash otherwise", mk(good, "0", sum0, wrong), answer{400, protocol.CodeChecksumMismatch}},
		{"bytes and header both another chunk's", mk(good, "0", sum2, c2), answer{400, protocol.CodeInvalid}},
		// The session's state.
		{"session being completed", chunkReq{compSess.ID, "0", compSess.UploadToken, compM.Chunks[0].SHA256, compData, 1000}, answer{409, protocol.CodeConflict}},
		{"session completed", chunkReq{doneSess.ID, "0", doneSess.UploadToken, doneM.Chunks[0].SHA256, doneData, 1000}, answer{409, protocol.CodeConflict}},
		{"session aborted", chunkReq{abortSess.ID, "0", abortSess.UploadToken, abortM.Chunks[0].SHA256, abortData, 1000}, answer{410, protocol.CodeSessionGone}},
		{"session expired", chunkReq{exp.ID, "0", expTok, expM.Chunks[0].SHA256, expData, 1000}, answer{410, protocol.CodeSessionGone}},
		{"bad index of a completed session: the state first", chunkReq{doneSess.ID, "x", doneSess.UploadToken, doneM.Chunks[0].SHA256, doneData, 1000}, answer{409, protocol.CodeConflict}},
		// A stream session's bounds.
		{"stream chunk past the reservation", chunkReq{st.ID, "3", st.UploadToken, hashOf(one), one, 1}, answer{413, protocol.CodeTooLarge}},
		{"stream chunk ending past the reservation", chunkReq{st.ID, "2", st.UploadToken, sum0, c0, int64(len(c0))}, answer{413, protocol.CodeTooLarge}},
		{"stream chunk at the last index", chunkReq{st.ID, fmt.Sprint(protocol.MaxChunkIndex), st.UploadToken, hashOf(one), one, 1}, answer{413, protocol.CodeTooLarge}},
		{"stream chunk larger than its chunk size", chunkReq{st.ID, "0", st.UploadToken, hashOf(big), big, int64(len(big))}, answer{400, protocol.CodeInvalid}},
		{"empty stream chunk", chunkReq{st.ID, "0", st.UploadToken, hashOf(nil), nil, 0}, answer{400, protocol.CodeInvalid}},
		{"stream chunk that hashes otherwise", chunkReq{st.ID, "0", st.UploadToken, sum0, wrong, int64(len(wrong))}, answer{400, protocol.CodeChecksumMismatch}},
	}
	check := func(name string, send func(base string) answer, want answer) {
		t.Helper()
		atOrigin, atRelay := send(o.url), send(relayURL)
		if atOrigin != want || atRelay != want {
			t.Errorf("%s: origin %d %s, relay %d %s; want %d %s from both", name, atOrigin.status, atOrigin.code, atRelay.status, atRelay.code, want.status, want.code)
		}
	}
	for _, c := range cases {
		check(c.name, func(base string) answer { return c.req.send(t, base) }, c.want)
	}
	// A body that goes silent.
	check("a body that goes silent", func(base string) answer { return stall(t, base, mk(good, "0", sum0, c0)) }, answer{408, protocol.CodeTimeout})

	// Nothing refused was stored.
	for _, id := range []string{s.ID, st.ID} {
		if h := held(t, o, id); len(h) != 0 {
			t.Errorf("session %s holds %v after refusals", id, h)
		}
	}
	// Both take what they should.
	if got := mk(good, "0", sum0, c0).send(t, o.url); got.status != 200 {
		t.Errorf("good chunk 0 at the origin: %+v", got)
	}
	if got := mk(good, "2", sum2, c2).send(t, relayURL); got.status != 200 {
		t.Errorf("good chunk 2 at the relay: %+v", got)
	}

	// The account: suspended, then deleted.
	suspend(t, o, "suspend")
	check("account suspended", func(base string) answer {
		return chunkReq{susp.ID, "0", susp.UploadToken, suspM.Chunks[0].SHA256, make([]byte, 1000), 1000}.send(t, base)
	}, answer{403, protocol.CodeAccountSuspended})
	suspend(t, o, "delete")
	check("account deleted", func(base string) answer {
		return chunkReq{gone.ID, "0", gone.UploadToken, goneM.Chunks[0].SHA256, make([]byte, 1000), 1000}.send(t, base)
	}, answer{403, protocol.CodeAccountDeleted})
}

// TestRelayOriginGone: a relay whose origin cannot be reached answers
// 502 bad_gateway, the one code with that status (it answered 502 with
// the code "unavailable", whose status is 503 everywhere else): the
// engine counts it against the route and sends the chunk elsewhere.
func TestRelayOriginGone(t *testing.T) {
	o := startOrigin(t, app.Config{})
	base := serve(t, newRelay(t, o, "edge_alone", nil))
	data, _ := io.ReadAll(testenv.NewRandReader(21, 1000))
	s, m := openSession(t, o, data)
	if err := o.stop(); err != nil {
		t.Fatal(err)
	}
	want := answer{http.StatusBadGateway, protocol.CodeBadGateway}
	if got := (chunkReq{s.ID, "0", s.UploadToken, m.Chunks[0].SHA256, data, 1000}).send(t, base); got != want {
		t.Fatalf("chunk with the origin gone: %+v, want %+v", got, want)
	}
	if protocol.StatusFor(want.code) != want.status {
		t.Fatalf("%s is %d in the one map", want.code, protocol.StatusFor(want.code))
	}
}
