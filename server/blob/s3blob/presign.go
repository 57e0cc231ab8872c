package s3blob

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/jettythunder/jetty/server/blob"
)

// Limits of PresignPart's ttl: SigV4 presigned requests live at most
// seven days, and X-Amz-Expires counts whole seconds.
const (
	MinPresignTTL = time.Second
	MaxPresignTTL = 7 * 24 * time.Hour
)

var _ blob.Presigner = (*Store)(nil)

// newPresignClient returns the presigner of the store's client c. With a
// public endpoint, presigned requests name that endpoint instead of the
// one the server talks to (same credentials, region and addressing style:
// only BaseEndpoint differs, set per operation on a copy of c's options).
// Presigning never sends anything.
func newPresignClient(c *s3.Client, public string) (*s3.PresignClient, error) {
	public = strings.TrimSpace(public)
	if public == "" {
		return s3.NewPresignClient(c), nil
	}
	if !strings.Contains(public, "://") {
		public = "https://" + public
	}
	u, err := url.Parse(public)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("s3blob: public endpoint %q is not an http(s) base URL", public)
	}
	return s3.NewPresignClient(c, s3.WithPresignClientFromClientOptions(func(o *s3.Options) {
		o.BaseEndpoint = aws.String(public)
	})), nil
}

// PresignPart presigns an UploadPart of exactly size bytes carrying
// x-amz-checksum-sha256 (the base64 of sum) as a signed header, for ttl
// (MinPresignTTL..MaxPresignTTL, rounded down to whole seconds). The
// backend refuses a body whose SHA-256 differs (and, Content-Length being
// signed too, a body of another length), and records the checksum with
// the part, so ListParts reports it as for PutPart. The payload itself is
// UNSIGNED-PAYLOAD (the SDK's presigned form): the checksum header is what
// binds the bytes, so the backend must enforce x-amz-checksum-* (MinIO
// does; see presign_test.go).
//
// The request's Headers are every signed header but Host (which the
// client's HTTP stack sets from the URL); Content-Length is among them
// when it was signed and must then be sent as the request's length. The
// URL names Config.PublicEndpoint when set. Nothing is sent: the upload
// is not checked to exist (a client sending for an unknown one gets
// NoSuchUpload).
func (s *Store) PresignPart(ctx context.Context, key, uploadID string, number int, size int64, sum []byte, ttl time.Duration) (blob.PresignedRequest, error) {
	switch {
	case !blob.ValidKey(key):
		return blob.PresignedRequest{}, blob.ErrInvalidKey
	case uploadID == "":
		return blob.PresignedRequest{}, blob.ErrNotFound
	case number < 1 || number > blob.MaxParts:
		return blob.PresignedRequest{}, fmt.Errorf("s3blob: part number %d outside 1..%d", number, blob.MaxParts)
	case size < 1:
		return blob.PresignedRequest{}, fmt.Errorf("s3blob: presigned part size must be at least 1, got %d", size)
	case len(sum) != sha256.Size:
		return blob.PresignedRequest{}, fmt.Errorf("s3blob: part digest must be %d bytes, got %d", sha256.Size, len(sum))
	case ttl < MinPresignTTL || ttl > MaxPresignTTL:
		return blob.PresignedRequest{}, fmt.Errorf("s3blob: presign ttl %v outside %v..%v", ttl, MinPresignTTL, MaxPresignTTL)
	}
	checksum := base64.StdEncoding.EncodeToString(sum)
	out, err := s.presign.PresignUploadPart(ctx, &s3.UploadPartInput{
		Bucket:            &s.bucket,
		Key:               &key,
		UploadId:          &uploadID,
		PartNumber:        aws.Int32(int32(number)),
		ContentLength:     aws.Int64(size),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		ChecksumSHA256:    &checksum,
	}, s3.WithPresignExpires(ttl))
	if err != nil {
		return blob.PresignedRequest{}, fmt.Errorf("s3blob: presign part %d of %s: %w", number, key, err)
	}
	pr := blob.PresignedRequest{Method: out.Method, URL: out.URL, Headers: make(map[string]string, len(out.SignedHeader))}
	for k, vs := range out.SignedHeader {
		k = http.CanonicalHeaderKey(k)
		if k == "Host" {
			continue
		}
		pr.Headers[k] = strings.Join(vs, ",")
	}
	// What makes the request safe to hand out, checked rather than
	// assumed of the SDK: the checksum is a signed header (not hoisted
	// into the query, where the backend would not verify the body
	// against it), and a signed length is the size.
	if pr.Headers["X-Amz-Checksum-Sha256"] != checksum {
		return blob.PresignedRequest{}, fmt.Errorf("s3blob: presign part %d of %s: x-amz-checksum-sha256 is not among the signed headers (%v)", number, key, out.SignedHeader)
	}
	if cl, ok := pr.Headers["Content-Length"]; ok && cl != strconv.FormatInt(size, 10) {
		return blob.PresignedRequest{}, fmt.Errorf("s3blob: presign part %d of %s: signed Content-Length %s, not %d", number, key, cl, size)
	}
	if pr.Expires, err = presignExpiry(out.URL); err != nil {
		return blob.PresignedRequest{}, fmt.Errorf("s3blob: presign part %d of %s: %w", number, key, err)
	}
	return pr, nil
}

// presignExpiry reads when a SigV4 presigned URL expires: X-Amz-Date plus
// X-Amz-Expires seconds, as the backend computes it.
func presignExpiry(rawURL string) (time.Time, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return time.Time{}, err
	}
	q := u.Query()
	signed, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		return time.Time{}, fmt.Errorf("presigned URL's X-Amz-Date: %w", err)
	}
	secs, err := strconv.ParseInt(q.Get("X-Amz-Expires"), 10, 64)
	if err != nil || secs <= 0 {
		return time.Time{}, errors.New("presigned URL has no valid X-Amz-Expires")
	}
	return signed.Add(time.Duration(secs) * time.Second).UTC(), nil
}
