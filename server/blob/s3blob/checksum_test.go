package s3blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/blob"
)

func testStore(t *testing.T) *Store {
	t.Helper()
	env := testenv.MinIO(t)
	s, err := New(context.Background(), Config{Endpoint: env.Endpoint, Region: env.Region, AccessKeyID: env.AccessKey, SecretAccessKey: env.SecretKey, Bucket: env.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

// Does the server itself check x-amz-checksum-sha256, and the SigV4
// payload hash, each on its own? Both must hold for PutPart's guarantee.
func TestServerEnforcesChecksums(t *testing.T) {
	s := testStore(t)
	ctx := t.Context()
	const key = "cs/obj"
	id, err := s.CreateUpload(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("x"), 1<<20)
	good := sha256.Sum256(body)
	bad := sha256.Sum256([]byte("other"))

	// 1. UNSIGNED-PAYLOAD: only the checksum header protects the bytes.
	s.payload = payloadUnsigned
	_, err = s.PutPart(ctx, key, id, 1, bytes.NewReader(body), int64(len(body)), bad[:])
	t.Logf("UNSIGNED-PAYLOAD, wrong x-amz-checksum-sha256: %v", err)
	if !errors.Is(err, blob.ErrChecksum) {
		t.Errorf("server accepted a part whose x-amz-checksum-sha256 is wrong: %v", err)
	}
	if _, err := s.PutPart(ctx, key, id, 1, bytes.NewReader(body), int64(len(body)), good[:]); err != nil {
		t.Errorf("UNSIGNED-PAYLOAD with the right checksum: %v", err)
	}
	s.payload = payloadSigned

	// 2. Right checksum header, wrong signed payload hash.
	_, err = s.c.UploadPart(ctx, &s3.UploadPartInput{
		Bucket: &s.bucket, Key: aws.String(key), UploadId: &id, PartNumber: aws.Int32(2),
		Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
		ChecksumSHA256: b64(good[:]),
	}, s3.WithAPIOptions(func(st *middleware.Stack) error {
		return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("wrongPayloadHash",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				return next.HandleFinalize(v4.SetPayloadHash(ctx, "0000000000000000000000000000000000000000000000000000000000000000"), in)
			}), middleware.Before)
	}))
	t.Logf("wrong signed payload hash: %v (maps to %v)", err, mapErr("", err))
	if !errors.Is(mapErr("", err), blob.ErrChecksum) {
		t.Errorf("server accepted a part whose signed payload hash is wrong: %v", err)
	}

	// 3. The default (both set to the caller's digest), wrong digest.
	_, err = s.PutPart(ctx, key, id, 3, bytes.NewReader(body), int64(len(body)), bad[:])
	t.Logf("signed, wrong digest: %v", err)
	if !errors.Is(err, blob.ErrChecksum) {
		t.Errorf("wrong digest: %v", err)
	}
	parts, err := s.ListParts(ctx, key, id)
	if err != nil || len(parts) != 1 || parts[0].Number != 1 || !bytes.Equal(parts[0].SHA256, good[:]) {
		t.Errorf("ListParts = %+v, %v; want only the good part 1", parts, err)
	}
}
