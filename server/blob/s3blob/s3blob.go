// Package s3blob is a blob.Store on any S3-compatible object store (Lyve
// Cloud in production, MinIO in tests), built on the plain aws-sdk-go-v2
// S3 client.
//
// The client is built with s3.New from explicit options, never
// config.LoadDefaultConfig: that would read the machine's AWS_* settings
// and, with AWS_CA_BUNDLE set, refuse any custom HTTP transport. Here
// AWS_CA_BUNDLE (or Config.CABundle) is loaded into the transport's
// RootCAs next to the system pool.
//
// Integrity: every upload request carries x-amz-checksum-sha256 (the
// base64 SHA-256 of its bytes) and is signed with that same SHA-256 as its
// SigV4 payload hash (x-amz-content-sha256), so the body is streamed once,
// never buffered or hashed a second time by the SDK, and the server refuses
// bytes that do not match (blob.ErrChecksum). The payload hash is checked
// by every SigV4 server; the checksum header is also recorded per part, so
// ListParts reports each part's SHA-256 (uploads are created with
// ChecksumAlgorithm SHA256).
//
// MinIO (RELEASE of 2026-02-12, the pinned version) enforces both checks
// on its own, as TestServerEnforcesChecksums shows: a part sent as
// UNSIGNED-PAYLOAD with a wrong x-amz-checksum-sha256 is refused with
// XAmzContentChecksumMismatch, and a part with the right checksum header
// but a wrong signed payload hash with XAmzContentSHA256Mismatch; both map
// to blob.ErrChecksum, and the refused part is not stored (an earlier part
// of the same number stays).
//
// Why a signed payload hash rather than UNSIGNED-PAYLOAD (the SDK's choice
// over TLS): the caller already knows the SHA-256, so signing it costs
// nothing, works over plain HTTP with an unseekable body (where the SDK
// would otherwise insist on reading the body to hash it), and is verified
// by every SigV4 implementation, including ones that ignore the newer
// x-amz-checksum-* headers.
//
// MinIO also lists multipart uploads by prefix only for an exact key and
// refuses lifecycle rules with AbortIncompleteMultipartUpload (it expires
// stale uploads itself, MINIO_API_STALE_UPLOADS_EXPIRY, default 24h);
// ListUploads and Setup cope with both.
package s3blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/jettythunder/jetty/server/blob"
)

const (
	defaultContentType = "application/octet-stream"
	lifecycleRuleID    = "jetty-abort-incomplete-multipart-uploads"
	abortTimeout       = 30 * time.Second
)

// Store is an S3-backed blob.Store, safe for concurrent use.
type Store struct {
	c        *s3.Client
	presign  *s3.PresignClient // names Config.PublicEndpoint when set
	bucket   string
	region   string
	partSize int64
	conc     int
	log      *slog.Logger
	bufs     sync.Pool // *[]byte of partSize

	setupMu sync.Mutex

	// payload selects how upload requests are signed (tests only).
	payload payloadMode
}

type payloadMode int

const (
	payloadSigned   payloadMode = iota // SigV4 payload hash = the caller's SHA-256
	payloadUnsigned                    // UNSIGNED-PAYLOAD; only x-amz-checksum-sha256 protects the bytes
)

var _ blob.Store = (*Store)(nil)

// New builds a Store. It makes no request (ctx is for symmetry with the
// other adapters' constructors); Setup checks the bucket.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("s3blob: no endpoint")
	}
	if cfg.Bucket == "" {
		return nil, errors.New("s3blob: no bucket")
	}
	endpoint := cfg.Endpoint
	if !strings.Contains(endpoint, "://") {
		endpoint = "https://" + endpoint
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < MinPartSize {
		return nil, fmt.Errorf("s3blob: part size %d is below S3's minimum %d", cfg.PartSize, MinPartSize)
	}
	if cfg.PutConcurrency <= 0 {
		cfg.PutConcurrency = DefaultPutConcurrency
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var hc aws.HTTPClient = cfg.HTTPClient
	if cfg.HTTPClient == nil {
		var err error
		if hc, err = newHTTPClient(cfg); err != nil {
			return nil, err
		}
	}
	hc = http11{hc}
	c := s3.New(s3.Options{
		Region:       cfg.Region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: !cfg.VirtualHostedStyle,
		Credentials:  credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, ""),
		HTTPClient:   hc,
		// Checksums are computed by us (SHA-256) where they matter;
		// don't let the SDK add CRC32 trailers to other calls.
		RequestChecksumCalculation:                aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation:                aws.ResponseChecksumValidationWhenRequired,
		DisableLogOutputChecksumValidationSkipped: true,
	})
	presign, err := newPresignClient(c, cfg.PublicEndpoint)
	if err != nil {
		return nil, err
	}
	s := &Store{
		c:        c,
		presign:  presign,
		bucket:   cfg.Bucket,
		region:   cfg.Region,
		partSize: cfg.PartSize,
		conc:     cfg.PutConcurrency,
		log:      cfg.Logger,
	}
	ps := cfg.PartSize
	s.bufs.New = func() any { b := make([]byte, ps); return &b }
	return s, nil
}

// Bucket returns the bucket's name.
func (s *Store) Bucket() string { return s.bucket }

// Client returns the underlying S3 client (for presigning).
func (s *Store) Client() *s3.Client { return s.c }

// newHTTPClient builds the SDK's buildable client with timeouts suited to
// long streaming requests (no overall deadline: contexts bound requests)
// and, when a CA bundle is configured, RootCAs = system pool + bundle.
func newHTTPClient(cfg Config) (aws.HTTPClient, error) {
	bundle := cfg.CABundle
	if bundle == "" {
		bundle = os.Getenv("AWS_CA_BUNDLE")
	}
	var roots *x509.CertPool
	if bundle != "" {
		pem, err := os.ReadFile(bundle)
		if err != nil {
			return nil, fmt.Errorf("s3blob: CA bundle: %w", err)
		}
		roots, err = x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("s3blob: CA bundle %s holds no PEM certificate", bundle)
		}
	}
	idle := max(64, 4*cfg.PutConcurrency)
	return awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) {
			d.Timeout = 10 * time.Second
			d.KeepAlive = 30 * time.Second
		}).
		WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConns = 2 * idle
			tr.MaxIdleConnsPerHost = idle
			tr.IdleConnTimeout = 90 * time.Second
			tr.TLSHandshakeTimeout = 10 * time.Second
			tr.ExpectContinueTimeout = 2 * time.Second
			// Time from the last body byte sent to the response's
			// headers: generous, CompleteMultipartUpload can take a while.
			tr.ResponseHeaderTimeout = 5 * time.Minute
			if roots != nil {
				if tr.TLSClientConfig == nil {
					tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
				}
				tr.TLSClientConfig.RootCAs = roots
			}
		}), nil
}

// http11 marks every request HTTP/1.1 before it is sent. The SDK builds
// its requests without a protocol version, and Go's transport honours
// "Expect: 100-continue" (which the SDK sets on bodies of 2 MB and more)
// only on requests that say HTTP/1.1 or later: without it the body went
// at once, and a store refusing a part before reading it (MinIO's 507 on
// a full drive) closed the connection under the body, so the refusal
// reached us as a connection reset (503, retried) instead of "full". With
// it the transport waits for the store's "100 Continue" (at most the
// transport's ExpectContinueTimeout), and a refusal is read, not raced.
type http11 struct{ aws.HTTPClient }

func (c http11) Do(r *http.Request) (*http.Response, error) {
	if r.ProtoMajor == 0 {
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	}
	return c.HTTPClient.Do(r)
}

// --- errors ---

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// noSpaceTexts are what S3 backends say in an error's message when their
// disks are full. MinIO on one drive answers a write that hit ENOSPC with
// 500 InternalError "…: cause(no space left on device)"; with erasure
// sets, 507 XMinioStorageFull (code matched in mapErr).
var noSpaceTexts = []string{"no space left on device", "drive path full", "minimum free drive threshold", "disk quota exceeded"}

// saysNoSpace reports an S3 error whose message says the backend's
// storage is full.
func saysNoSpace(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	msg := strings.ToLower(ae.ErrorMessage())
	for _, t := range noSpaceTexts {
		if strings.Contains(msg, t) {
			return true
		}
	}
	return false
}

// mapErr turns S3 errors into blob's: the sentinel is matchable with
// errors.Is, the original text stays in the message.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	switch code := apiCode(err); code {
	case "NoSuchKey", "NotFound", "NoSuchUpload":
		return fmt.Errorf("%w (s3 %s: %v)", blob.ErrNotFound, op, err)
	case "BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "XAmzContentChecksumMismatch", "InvalidChecksum":
		return fmt.Errorf("%w (s3 %s: %v)", blob.ErrChecksum, op, err)
	case "InvalidRange":
		return fmt.Errorf("%w (s3 %s: %v)", blob.ErrInvalidRange, op, err)
	case "XMinioStorageFull", "StorageFull", "InsufficientStorage", "XMinioAdminBucketQuotaExceeded", "QuotaExceeded":
		// MinIO below its free-space floor, or a full drive (507); a
		// bucket or user quota of the backend (MinIO, Ceph RGW).
		return fmt.Errorf("%w (s3 %s: %v)", blob.ErrNoSpace, op, err)
	case "":
		if httpStatus(err) == http.StatusNotFound {
			return fmt.Errorf("%w (s3 %s: %v)", blob.ErrNotFound, op, err)
		}
	}
	if httpStatus(err) == http.StatusInsufficientStorage || saysNoSpace(err) {
		return fmt.Errorf("%w (s3 %s: %v)", blob.ErrNoSpace, op, err)
	}
	if unavailable(err) {
		return fmt.Errorf("s3blob: %s: %w: %w", op, blob.ErrUnavailable, err)
	}
	return fmt.Errorf("s3blob: %s: %w", op, err)
}

// unavailable reports whether err means the store cannot take calls for
// the moment: it answered 5xx, 429 or a throttling code, or it could not
// be reached (refused, reset, no route, DNS, the SDK's retry budget spent
// on such failures). A body that our client stopped sending (a deadline
// on the incoming connection) or a caller that gave up is not an outage.
func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	switch apiCode(err) {
	case "SlowDown", "ServiceUnavailable", "InternalError", "Throttling", "ThrottlingException",
		"RequestLimitExceeded", "TooManyRequests", "XMinioServerNotInitialized", "XMinioReadQuorum", "XMinioWriteQuorum":
		return true
	}
	if st := httpStatus(err); st >= 500 || st == http.StatusTooManyRequests {
		return st != http.StatusNotImplemented
	}
	var qe *ratelimit.QuotaExceededError
	var rse *smithyhttp.RequestSendError
	var oe *net.OpError
	var de *net.DNSError
	switch {
	case errors.As(err, &qe), errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.As(err, &rse):
		// The request could not be sent or its answer not read because a
		// socket failed: the store is down or unreachable. (A body our
		// client stopped sending fails on its deadline, above; one it cut
		// short is the caller's to tell.)
		return errors.As(err, &oe) || errors.As(err, &de) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
	}
	return false
}

// --- request options ---

// withPayload makes an upload request use sum as its SigV4 payload hash,
// so the SDK neither reads the body to hash it nor needs it seekable.
func (s *Store) withPayload(sum []byte) func(*s3.Options) {
	if s.payload == payloadUnsigned {
		return s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
	}
	h := hex.EncodeToString(sum)
	return s3.WithAPIOptions(func(st *middleware.Stack) error {
		return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("JettyPayloadSHA256",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				return next.HandleFinalize(v4.SetPayloadHash(ctx, h), in)
			}), middleware.Before)
	})
}

// noRetry is for requests whose body cannot be rewound.
func noRetry(o *s3.Options) { o.RetryMaxAttempts = 1 }

func b64(sum []byte) *string { return aws.String(base64.StdEncoding.EncodeToString(sum)) }

func normContentType(ct string) string {
	if ct == "" {
		return defaultContentType
	}
	return ct
}

// --- Setup ---

// Setup creates the bucket when missing and makes sure a lifecycle rule
// aborts multipart uploads left incomplete for a day. A backend that does
// not do lifecycle rules is noted in the log, not an error. Idempotent,
// and safe to run from several processes at once.
func (s *Store) Setup(ctx context.Context) error {
	s.setupMu.Lock()
	defer s.setupMu.Unlock()
	_, err := s.c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket})
	if err != nil {
		if !errors.Is(mapErr("", err), blob.ErrNotFound) {
			return mapErr("head bucket "+s.bucket, err)
		}
		in := &s3.CreateBucketInput{Bucket: &s.bucket}
		if s.region != DefaultRegion {
			in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(s.region)}
		}
		if _, err := s.c.CreateBucket(ctx, in); err != nil && apiCode(err) != "BucketAlreadyOwnedByYou" {
			return mapErr("create bucket "+s.bucket, err)
		}
		s.log.Info("s3blob: created bucket", "bucket", s.bucket)
	}
	return s.ensureLifecycle(ctx)
}

func (s *Store) ensureLifecycle(ctx context.Context) error {
	var rules []types.LifecycleRule
	out, err := s.c.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: &s.bucket})
	switch {
	case err == nil:
		rules = out.Rules
	case apiCode(err) == "NoSuchLifecycleConfiguration":
	default:
		return s.lifecycleRefused("get", err)
	}
	for _, r := range rules {
		everything := aws.ToString(r.Prefix) == "" && (r.Filter == nil ||
			(aws.ToString(r.Filter.Prefix) == "" && r.Filter.And == nil && r.Filter.Tag == nil &&
				r.Filter.ObjectSizeGreaterThan == nil && r.Filter.ObjectSizeLessThan == nil))
		if r.Status == types.ExpirationStatusEnabled && r.AbortIncompleteMultipartUpload != nil && everything {
			return nil // some rule already aborts every upload
		}
	}
	rules = append(rules, types.LifecycleRule{
		ID:                             aws.String(lifecycleRuleID),
		Status:                         types.ExpirationStatusEnabled,
		Filter:                         &types.LifecycleRuleFilter{Prefix: aws.String("")},
		AbortIncompleteMultipartUpload: &types.AbortIncompleteMultipartUpload{DaysAfterInitiation: aws.Int32(1)},
	})
	_, err = s.c.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{
		Bucket:                 &s.bucket,
		LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: rules},
		ChecksumAlgorithm:      types.ChecksumAlgorithmSha256,
	})
	if err != nil {
		return s.lifecycleRefused("put", err)
	}
	s.log.Info("s3blob: added lifecycle rule aborting incomplete multipart uploads after 1 day", "bucket", s.bucket)
	return nil
}

// lifecycleRefused logs a backend's refusal of lifecycle rules and
// returns nil; transport errors are returned.
func (s *Store) lifecycleRefused(op string, err error) error {
	code := apiCode(err)
	switch code {
	case "":
		return mapErr(op+" bucket lifecycle", err)
	case "NotImplemented", "NotSupported", "MethodNotAllowed", "XNotImplemented",
		// MinIO: lifecycle rules without AbortIncompleteMultipartUpload
		// (it expires stale uploads itself, MINIO_API_STALE_UPLOADS_EXPIRY).
		"InvalidArgument", "MalformedXML", "InvalidRequest":
		s.log.Debug("s3blob: backend refuses the lifecycle rule aborting incomplete uploads; the server's own sweep must clean them", "bucket", s.bucket, "code", code, "err", err)
	default:
		s.log.Warn("s3blob: cannot set the lifecycle rule aborting incomplete uploads", "bucket", s.bucket, "op", op, "err", err)
	}
	return nil
}

// --- objects ---

func (s *Store) getBuf(size int64) *[]byte {
	if size == s.partSize {
		return s.bufs.Get().(*[]byte)
	}
	b := make([]byte, size)
	return &b
}

func (s *Store) putBuf(b *[]byte) {
	if int64(cap(*b)) == s.partSize {
		*b = (*b)[:s.partSize]
		s.bufs.Put(b)
	}
}

// fill reads into buf until it is full or r ends. It returns the count and
// io.EOF when r ended (possibly with n > 0), nil when buf is full, or r's
// error.
func fill(r io.Reader, buf []byte) (int, error) {
	n, err := io.ReadFull(r, buf)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}

func sizeErr(got, want int64) error {
	if got > want {
		return fmt.Errorf("s3blob: body is longer than its size %d", want)
	}
	return fmt.Errorf("s3blob: body is %d bytes, expected %d: %w", got, want, io.ErrUnexpectedEOF)
}

// Put streams r through PartSize buffers: a body that fits in one buffer
// is one PutObject (a body known to be smaller gets a buffer of its size), a longer one a multipart upload with at most
// PutConcurrency parts in flight (so at most PartSize × (PutConcurrency+1)
// bytes held), aborted on any error. The whole-object SHA-256 is computed
// while reading.
//
// With a known size above PartSize × 10000 the part size grows to fit
// S3's part limit (and memory with it); an unknown size fails beyond that.
// The returned Info's ModTime is the local clock (S3 does not return the
// object's time on upload).
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) (blob.Info, []byte, error) {
	if !blob.ValidKey(key) {
		return blob.Info{}, nil, blob.ErrInvalidKey
	}
	if size < -1 {
		return blob.Info{}, nil, fmt.Errorf("s3blob: invalid size %d", size)
	}
	contentType = normContentType(contentType)
	partSize := s.partSize
	src := io.Reader(blob.ContextReader(ctx, r))
	if size >= 0 {
		src = io.LimitReader(src, size+1)
		if need := (size + blob.MaxParts - 1) / blob.MaxParts; need > partSize {
			partSize = (need + 1<<20 - 1) &^ (1<<20 - 1)
		}
	}
	whole := sha256.New()

	if size >= 0 && size < partSize {
		// Known to be small: a buffer of its own size (one byte more to
		// catch a longer body), not a whole part's.
		buf := make([]byte, size+1)
		n, err := fill(src, buf)
		if err == nil {
			return blob.Info{}, nil, sizeErr(size+1, size)
		}
		if err != io.EOF {
			return blob.Info{}, nil, err
		}
		whole.Write(buf[:n])
		return s.putSingle(ctx, key, buf[:n], size, contentType, whole.Sum(nil))
	}

	first := s.getBuf(partSize)
	n, err := fill(src, *first)
	if err != nil && err != io.EOF {
		s.putBuf(first)
		return blob.Info{}, nil, err
	}
	whole.Write((*first)[:n])
	if err == io.EOF {
		defer s.putBuf(first)
		return s.putSingle(ctx, key, (*first)[:n], size, contentType, whole.Sum(nil))
	}
	// The first buffer is full: look at the next to know whether there is
	// more than one part.
	second := s.getBuf(partSize)
	n2, err := fill(src, *second)
	if err != nil && err != io.EOF {
		s.putBuf(first)
		s.putBuf(second)
		return blob.Info{}, nil, err
	}
	if n2 == 0 {
		s.putBuf(second)
		defer s.putBuf(first)
		return s.putSingle(ctx, key, *first, size, contentType, whole.Sum(nil))
	}
	whole.Write((*second)[:n2])
	return s.putMultipart(ctx, key, src, size, contentType, partSize, whole, first, second, n2, err == io.EOF)
}

func (s *Store) putSingle(ctx context.Context, key string, data []byte, size int64, contentType string, sum []byte) (blob.Info, []byte, error) {
	if size >= 0 && int64(len(data)) != size {
		return blob.Info{}, nil, sizeErr(int64(len(data)), size)
	}
	_, err := s.c.PutObject(ctx, &s3.PutObjectInput{
		Bucket:            &s.bucket,
		Key:               &key,
		Body:              bytes.NewReader(data),
		ContentLength:     aws.Int64(int64(len(data))),
		ContentType:       &contentType,
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		ChecksumSHA256:    b64(sum),
	}, s.withPayload(sum))
	if err != nil {
		return blob.Info{}, nil, mapErr("put "+key, err)
	}
	return blob.Info{Key: key, Size: int64(len(data)), ContentType: contentType, ModTime: time.Now().UTC(), SHA256: sum}, sum, nil
}

func (s *Store) putMultipart(ctx context.Context, key string, src io.Reader, size int64, contentType string,
	partSize int64, whole hash.Hash, first, second *[]byte, n2 int, ended bool) (info blob.Info, sum []byte, err error) {
	created, err := s.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:            &s.bucket,
		Key:               &key,
		ContentType:       &contentType,
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
	})
	if err != nil {
		s.putBuf(first)
		s.putBuf(second)
		return blob.Info{}, nil, mapErr("create multipart upload "+key, err)
	}
	uploadID := created.UploadId

	upCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		done  []types.CompletedPart
		sem   = make(chan struct{}, s.conc)
		total int64
	)
	failed := func() error {
		if context.Cause(upCtx) != nil {
			return context.Cause(upCtx)
		}
		return nil
	}
	// launch uploads buf[:n] as part num; it owns buf from here on.
	launch := func(num int32, buf *[]byte, n int) error {
		select {
		case sem <- struct{}{}:
		case <-upCtx.Done():
			s.putBuf(buf)
			return context.Cause(upCtx)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer s.putBuf(buf)
			data := (*buf)[:n]
			ps := sha256.Sum256(data)
			out, err := s.c.UploadPart(upCtx, &s3.UploadPartInput{
				Bucket:            &s.bucket,
				Key:               &key,
				UploadId:          uploadID,
				PartNumber:        aws.Int32(num),
				Body:              bytes.NewReader(data),
				ContentLength:     aws.Int64(int64(n)),
				ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
				ChecksumSHA256:    b64(ps[:]),
			}, s.withPayload(ps[:]))
			if err != nil {
				cancel(mapErr(fmt.Sprintf("upload part %d of %s", num, key), err))
				return
			}
			mu.Lock()
			done = append(done, types.CompletedPart{PartNumber: aws.Int32(num), ETag: out.ETag, ChecksumSHA256: b64(ps[:])})
			mu.Unlock()
		}()
		return nil
	}

	err = func() error {
		total = partSize
		if err := launch(1, first, int(partSize)); err != nil {
			return err
		}
		total += int64(n2)
		if err := launch(2, second, n2); err != nil {
			return err
		}
		for num := int32(3); !ended; num++ {
			if err := failed(); err != nil {
				return err
			}
			buf := s.getBuf(partSize)
			n, rerr := fill(src, *buf)
			if rerr != nil && rerr != io.EOF {
				s.putBuf(buf)
				return rerr
			}
			ended = rerr == io.EOF
			if n == 0 {
				s.putBuf(buf)
				break
			}
			if num > blob.MaxParts {
				s.putBuf(buf)
				return fmt.Errorf("s3blob: body exceeds %d parts of %d bytes", blob.MaxParts, partSize)
			}
			whole.Write((*buf)[:n])
			total += int64(n)
			if err := launch(num, buf, n); err != nil {
				return err
			}
		}
		if size >= 0 && total != size {
			return sizeErr(total, size)
		}
		return nil
	}()
	if err != nil {
		cancel(err)
	}
	wg.Wait()
	if err == nil {
		err = failed()
	}
	if err == nil {
		sort.Slice(done, func(i, j int) bool { return *done[i].PartNumber < *done[j].PartNumber })
		_, err = s.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket:          &s.bucket,
			Key:             &key,
			UploadId:        uploadID,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: done},
		})
		if err != nil {
			err = mapErr("complete multipart upload "+key, err)
		}
	}
	if err != nil {
		s.abort(ctx, key, *uploadID)
		return blob.Info{}, nil, err
	}
	sum = whole.Sum(nil)
	return blob.Info{Key: key, Size: total, ContentType: contentType, ModTime: time.Now().UTC(), SHA256: sum}, sum, nil
}

// abort aborts an upload on a context that survives the caller's
// cancellation.
func (s *Store) abort(ctx context.Context, key, uploadID string) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	if _, err := s.c.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: &uploadID}); err != nil && apiCode(err) != "NoSuchUpload" {
		s.log.Warn("s3blob: abort multipart upload (the lifecycle rule will)", "key", key, "upload", uploadID, "err", err)
	}
}

// Get reads the object (or a range of it) with one GetObject.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, blob.Info, error) {
	if !blob.ValidKey(key) {
		return nil, blob.Info{}, blob.ErrInvalidKey
	}
	if offset < 0 || length < -1 {
		return nil, blob.Info{}, blob.ErrInvalidRange
	}
	empty := func() (io.ReadCloser, blob.Info, error) {
		info, err := s.Stat(ctx, key)
		if err != nil {
			return nil, blob.Info{}, err
		}
		if offset > info.Size {
			return nil, blob.Info{}, blob.ErrInvalidRange
		}
		return io.NopCloser(bytes.NewReader(nil)), info, nil
	}
	if length == 0 {
		return empty()
	}
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: &key}
	if offset > 0 || length > 0 {
		rng := "bytes=" + strconv.FormatInt(offset, 10) + "-"
		if length > 0 {
			rng += strconv.FormatInt(offset+length-1, 10)
		}
		in.Range = &rng
	}
	out, err := s.c.GetObject(ctx, in)
	if err != nil {
		if apiCode(err) == "InvalidRange" || httpStatus(err) == http.StatusRequestedRangeNotSatisfiable {
			return empty() // offset == size is an empty read, beyond is ErrInvalidRange
		}
		return nil, blob.Info{}, mapErr("get "+key, err)
	}
	info := blob.Info{Key: key, Size: aws.ToInt64(out.ContentLength), ContentType: aws.ToString(out.ContentType), ModTime: aws.ToTime(out.LastModified).UTC()}
	if cr := aws.ToString(out.ContentRange); cr != "" {
		if i := strings.LastIndexByte(cr, '/'); i >= 0 {
			if total, err := strconv.ParseInt(cr[i+1:], 10, 64); err == nil {
				info.Size = total
			}
		}
	}
	return out.Body, info, nil
}

// Stat is HeadObject.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	if !blob.ValidKey(key) {
		return blob.Info{}, blob.ErrInvalidKey
	}
	out, err := s.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return blob.Info{}, mapErr("stat "+key, err)
	}
	return blob.Info{Key: key, Size: aws.ToInt64(out.ContentLength), ContentType: aws.ToString(out.ContentType), ModTime: aws.ToTime(out.LastModified).UTC()}, nil
}

// Delete is DeleteObject; a missing object is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if !blob.ValidKey(key) {
		return blob.ErrInvalidKey
	}
	_, err := s.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil && !errors.Is(mapErr("", err), blob.ErrNotFound) {
		return mapErr("delete "+key, err)
	}
	return nil
}

// List pages through ListObjectsV2. ContentType is left empty (the
// listing does not carry it; use Stat).
func (s *Store) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	var out []blob.Info
	p := s3.NewListObjectsV2Paginator(s.c, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, mapErr("list "+prefix, err)
		}
		for _, o := range page.Contents {
			out = append(out, blob.Info{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified).UTC()})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// --- multipart uploads ---

// CreateUpload starts a multipart upload with ChecksumAlgorithm SHA256, so
// the backend records every part's SHA-256.
func (s *Store) CreateUpload(ctx context.Context, key, contentType string) (string, error) {
	if !blob.ValidKey(key) {
		return "", blob.ErrInvalidKey
	}
	out, err := s.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:            &s.bucket,
		Key:               &key,
		ContentType:       aws.String(normContentType(contentType)),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
	})
	if err != nil {
		return "", mapErr("create multipart upload "+key, err)
	}
	return aws.ToString(out.UploadId), nil
}

// PutPart streams r (exactly size bytes) as one UploadPart, signed with
// sum as payload hash and carrying x-amz-checksum-sha256: the server
// verifies the bytes and keeps nothing on mismatch (ErrChecksum).
func (s *Store) PutPart(ctx context.Context, key, uploadID string, number int, r io.Reader, size int64, sum []byte) (blob.Part, error) {
	if !blob.ValidKey(key) {
		return blob.Part{}, blob.ErrInvalidKey
	}
	if uploadID == "" {
		return blob.Part{}, blob.ErrNotFound
	}
	if number < 1 || number > blob.MaxParts {
		return blob.Part{}, fmt.Errorf("s3blob: part number %d outside 1..%d", number, blob.MaxParts)
	}
	if len(sum) != sha256.Size {
		return blob.Part{}, fmt.Errorf("s3blob: part digest must be %d bytes, got %d", sha256.Size, len(sum))
	}
	if size < 0 {
		return blob.Part{}, fmt.Errorf("s3blob: part size must be known, got %d", size)
	}
	// Hide any Seek method: the body is streamed once, never rewound.
	body := struct{ io.Reader }{io.LimitReader(blob.ContextReader(ctx, r), size)}
	out, err := s.c.UploadPart(ctx, &s3.UploadPartInput{
		Bucket:            &s.bucket,
		Key:               &key,
		UploadId:          &uploadID,
		PartNumber:        aws.Int32(int32(number)),
		Body:              body,
		ContentLength:     aws.Int64(size),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		ChecksumSHA256:    b64(sum),
	}, s.withPayload(sum), noRetry)
	if err != nil {
		return blob.Part{}, mapErr(fmt.Sprintf("upload part %d of %s", number, key), err)
	}
	return blob.Part{Number: number, Size: size, SHA256: bytes.Clone(sum), ETag: aws.ToString(out.ETag)}, nil
}

// ListParts pages through ListParts and decodes each part's SHA-256 (nil
// when the backend did not record one).
func (s *Store) ListParts(ctx context.Context, key, uploadID string) ([]blob.Part, error) {
	if !blob.ValidKey(key) {
		return nil, blob.ErrInvalidKey
	}
	if uploadID == "" {
		return nil, blob.ErrNotFound
	}
	var parts []blob.Part
	p := s3.NewListPartsPaginator(s.c, &s3.ListPartsInput{Bucket: &s.bucket, Key: &key, UploadId: &uploadID})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, mapErr("list parts of "+key, err)
		}
		for _, pt := range page.Parts {
			bp := blob.Part{Number: int(aws.ToInt32(pt.PartNumber)), Size: aws.ToInt64(pt.Size), ETag: aws.ToString(pt.ETag)}
			if c := aws.ToString(pt.ChecksumSHA256); c != "" {
				if d, err := base64.StdEncoding.DecodeString(c); err == nil && len(d) == sha256.Size {
					bp.SHA256 = d
				}
			}
			parts = append(parts, bp)
		}
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Number < parts[j].Number })
	return parts, nil
}

// CompleteUpload checks parts against ListParts (blob.CheckParts), then
// completes with each part's ETag and SHA-256 as stored.
func (s *Store) CompleteUpload(ctx context.Context, key, uploadID string, parts []blob.Part) (blob.Info, error) {
	stored, err := s.ListParts(ctx, key, uploadID)
	if err != nil {
		return blob.Info{}, err
	}
	if err := blob.CheckParts(parts, stored); err != nil {
		return blob.Info{}, err
	}
	byNum := make(map[int]blob.Part, len(stored))
	for _, p := range stored {
		byNum[p.Number] = p
	}
	cps := make([]types.CompletedPart, len(parts))
	for i, g := range parts {
		st := byNum[g.Number]
		cps[i] = types.CompletedPart{PartNumber: aws.Int32(int32(g.Number)), ETag: aws.String(st.ETag)}
		if len(st.SHA256) > 0 {
			cps[i].ChecksumSHA256 = b64(st.SHA256)
		}
	}
	_, err = s.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &s.bucket,
		Key:             &key,
		UploadId:        &uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: cps},
	})
	if err != nil {
		return blob.Info{}, mapErr("complete multipart upload "+key, err)
	}
	return s.Stat(ctx, key)
}

// AbortUpload is AbortMultipartUpload; an unknown upload is not an error.
func (s *Store) AbortUpload(ctx context.Context, key, uploadID string) error {
	if !blob.ValidKey(key) {
		return blob.ErrInvalidKey
	}
	if uploadID == "" {
		return nil
	}
	_, err := s.c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: &uploadID})
	if err != nil && !errors.Is(mapErr("", err), blob.ErrNotFound) {
		return mapErr("abort multipart upload "+key, err)
	}
	return nil
}

// ListUploads pages through ListMultipartUploads, keeping uploads
// initiated before before (zero: all), sorted by key then start time.
//
// MinIO lists uploads by prefix only for an exact object key; with an
// empty prefix it answers every upload it knows of. So with a prefix the
// whole bucket's uploads are listed too and filtered here; the union is
// right on both kinds of server.
func (s *Store) ListUploads(ctx context.Context, prefix string, before time.Time) ([]blob.Upload, error) {
	out, err := s.listUploads(ctx, prefix, prefix, before)
	if err != nil {
		return nil, err
	}
	if prefix != "" {
		more, err := s.listUploads(ctx, "", prefix, before)
		if err != nil {
			return nil, err
		}
		seen := make(map[string]bool, len(out))
		for _, u := range out {
			seen[u.Key+"\x00"+u.UploadID] = true
		}
		for _, u := range more {
			if !seen[u.Key+"\x00"+u.UploadID] {
				out = append(out, u)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key != out[j].Key {
			return out[i].Key < out[j].Key
		}
		if !out[i].Initiated.Equal(out[j].Initiated) {
			return out[i].Initiated.Before(out[j].Initiated)
		}
		return out[i].UploadID < out[j].UploadID
	})
	return out, nil
}

// listUploads lists with the server-side prefix query and keeps the
// uploads whose key starts with prefix.
func (s *Store) listUploads(ctx context.Context, query, prefix string, before time.Time) ([]blob.Upload, error) {
	var out []blob.Upload
	p := s3.NewListMultipartUploadsPaginator(s.c, &s3.ListMultipartUploadsInput{Bucket: &s.bucket, Prefix: &query})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, mapErr("list multipart uploads "+query, err)
		}
		for _, u := range page.Uploads {
			key, init := aws.ToString(u.Key), aws.ToTime(u.Initiated).UTC()
			if !strings.HasPrefix(key, prefix) || (!before.IsZero() && !init.Before(before)) {
				continue
			}
			out = append(out, blob.Upload{Key: key, UploadID: aws.ToString(u.UploadId), Initiated: init})
		}
	}
	return out, nil
}
