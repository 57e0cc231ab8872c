package s3blob_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/blob/blobtest"
	"github.com/jettythunder/jetty/server/blob/s3blob"
)

func config(env testenv.S3) s3blob.Config {
	return s3blob.Config{
		Endpoint:        env.Endpoint,
		Region:          env.Region,
		AccessKeyID:     env.AccessKey,
		SecretAccessKey: env.SecretKey,
		Bucket:          env.Bucket,
	}
}

func newStore(t *testing.T, cfg s3blob.Config) *s3blob.Store {
	t.Helper()
	s, err := s3blob.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		cfg := config(testenv.MinIO(t))
		// The smallest part size S3 allows, so the suite's sizes cross
		// part boundaries; three parts in flight.
		cfg.PartSize = s3blob.MinPartSize
		cfg.PutConcurrency = 3
		return newStore(t, cfg)
	})
}

func TestConfigFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if _, ok := s3blob.ConfigFromEnv(env(nil)); ok {
		t.Error("ok without LYVE_ENDPOINT")
	}
	c, ok := s3blob.ConfigFromEnv(env(map[string]string{
		"LYVE_ENDPOINT":   "https://s3.lyvecloud.seagate.com",
		"LYVE_ACCESS_KEY": "seed-key",
		"LYVE_SECRET_KEY": "seed-secret",
	}))
	if !ok || c.AccessKeyID != "seed-key" || c.SecretAccessKey != "seed-secret" || c.Bucket != "agentcache-assets" || c.VirtualHostedStyle {
		t.Errorf("seed names: %+v %v", c, ok)
	}
	c, _ = s3blob.ConfigFromEnv(env(map[string]string{
		"LYVE_ENDPOINT":          "https://e",
		"LYVE_REGION":            "eu-west-1",
		"LYVE_ACCESS_KEY_ID":     "id",
		"LYVE_ACCESS_KEY":        "seed-key",
		"LYVE_SECRET_ACCESS_KEY": "secret",
		"LYVE_BUCKET_NAME":       "b",
		"LYVE_PATH_STYLE":        "false",
	}))
	if c.Region != "eu-west-1" || c.AccessKeyID != "id" || c.SecretAccessKey != "secret" || c.Bucket != "b" || !c.VirtualHostedStyle {
		t.Errorf("full names: %+v", c)
	}
	if _, err := s3blob.New(context.Background(), s3blob.Config{Endpoint: "x", Bucket: "b", PartSize: 1 << 20}); err == nil {
		t.Error("part size below 5 MiB accepted")
	}
}

// roundTrip sets the store up and stores and reads one object.
func roundTrip(s *s3blob.Store, t *testing.T) error {
	ctx := t.Context()
	if err := s.Setup(ctx); err != nil {
		return err
	}
	if _, _, err := s.Put(ctx, "ca/k", strings.NewReader("hello"), 5, "text/plain"); err != nil {
		return err
	}
	rc, _, err := s.Get(ctx, "ca/k", 0, -1)
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	if string(b) != "hello" {
		return errors.New("read back " + string(b))
	}
	return nil
}

// The machines set AWS_CA_BUNDLE; the store must work with and without it
// (the SDK's LoadDefaultConfig would refuse our transport).
func TestCABundleEnv(t *testing.T) {
	env := testenv.MinIO(t)
	bundle := "/etc/ssl/certs/ca-certificates.crt"
	if _, err := os.Stat(bundle); err != nil {
		bundle = writePEM(t, selfSignedCert(t))
	}
	for _, v := range []string{bundle, ""} {
		t.Run("AWS_CA_BUNDLE="+v, func(t *testing.T) {
			t.Setenv("AWS_CA_BUNDLE", v)
			// The production path: configuration from the LYVE_* variables.
			t.Setenv("LYVE_ENDPOINT", env.Endpoint)
			t.Setenv("LYVE_ACCESS_KEY_ID", env.AccessKey)
			t.Setenv("LYVE_SECRET_ACCESS_KEY", env.SecretKey)
			t.Setenv("LYVE_BUCKET_NAME", env.Bucket)
			cfg, ok := s3blob.ConfigFromEnv(os.Getenv)
			if !ok {
				t.Fatal("ConfigFromEnv: not ok")
			}
			if err := roundTrip(newStore(t, cfg), t); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("missing bundle file", func(t *testing.T) {
		t.Setenv("AWS_CA_BUNDLE", filepath.Join(t.TempDir(), "nope.pem"))
		if _, err := s3blob.New(context.Background(), config(env)); err == nil {
			t.Fatal("New with a missing CA bundle succeeded")
		}
	})
}

// Over TLS, with a CA only the bundle knows: a TLS reverse proxy in front
// of MinIO, its certificate in AWS_CA_BUNDLE.
func TestCABundleTLS(t *testing.T) {
	env := testenv.MinIO(t)
	target, _ := url.Parse(env.Endpoint)
	proxy := httptest.NewTLSServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host // the host the request was signed for
	}})
	defer proxy.Close()
	pemFile := writePEM(t, proxy.Certificate().Raw)
	cfg := config(env)
	cfg.Endpoint = proxy.URL

	t.Run("AWS_CA_BUNDLE", func(t *testing.T) {
		t.Setenv("AWS_CA_BUNDLE", pemFile)
		if err := roundTrip(newStore(t, cfg), t); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Config.CABundle", func(t *testing.T) {
		t.Setenv("AWS_CA_BUNDLE", "")
		c := cfg
		c.CABundle = pemFile
		if err := roundTrip(newStore(t, c), t); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("no bundle", func(t *testing.T) {
		t.Setenv("AWS_CA_BUNDLE", "")
		err := roundTrip(newStore(t, cfg), t)
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("untrusted certificate: err = %v, want a certificate error", err)
		}
	})
}

func writePEM(t *testing.T, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func selfSignedCert(t *testing.T) []byte {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	return srv.Certificate().Raw
}

// Setup adds the lifecycle rule once, keeps an operator's own rules, and
// is not an error on a backend that refuses the rule (MinIO does: it has no
// AbortIncompleteMultipartUpload and expires stale uploads on its own).
func TestSetupLifecycle(t *testing.T) {
	env := testenv.MinIO(t)
	ctx := t.Context()
	c := env.S3Client()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &env.Bucket}); err != nil {
		t.Fatal(err)
	}
	operator := types.LifecycleRule{
		ID:         aws.String("operator-logs"),
		Status:     types.ExpirationStatusEnabled,
		Filter:     &types.LifecycleRuleFilter{Prefix: aws.String("logs/")},
		Expiration: &types.LifecycleExpiration{Days: aws.Int32(30)},
	}
	if _, err := c.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{
		Bucket:                 &env.Bucket,
		LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: []types.LifecycleRule{operator}},
		ChecksumAlgorithm:      types.ChecksumAlgorithmSha256,
	}); err != nil {
		t.Fatalf("operator rule: %v", err)
	}
	for range 2 {
		// Two server instances starting.
		if err := newStore(t, config(env)).Setup(ctx); err != nil {
			t.Fatal(err)
		}
	}
	out, err := c.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: &env.Bucket})
	if err != nil {
		t.Fatalf("get lifecycle: %v", err)
	}
	abort, kept := 0, false
	for _, r := range out.Rules {
		if r.AbortIncompleteMultipartUpload != nil {
			abort++
		}
		if aws.ToString(r.ID) == "operator-logs" {
			kept = true
		}
	}
	if !kept {
		t.Errorf("Setup dropped the operator's rule: %+v", out.Rules)
	}
	switch abort {
	case 0:
		t.Logf("the backend refused the abort-incomplete-uploads rule (expected on MinIO)")
	case 1:
	default:
		t.Errorf("%d abort rules after two Setups", abort)
	}
}

func TestPutPartStreamsUnseekable(t *testing.T) {
	// PutPart over plain HTTP with a body that cannot seek: the SDK alone
	// would refuse to hash it.
	env := testenv.MinIO(t)
	s := newStore(t, config(env))
	ctx := t.Context()
	if err := s.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := s.CreateUpload(ctx, "u/obj", "")
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), 6<<16) // 6 MiB
	sum := sha256Sum(body)
	p, err := s.PutPart(ctx, "u/obj", id, 1, struct{ io.Reader }{bytes.NewReader(body)}, int64(len(body)), sum)
	if err != nil {
		t.Fatal(err)
	}
	if p.ETag == "" {
		t.Error("no ETag")
	}
	parts, err := s.ListParts(ctx, "u/obj", id)
	if err != nil || len(parts) != 1 || !bytes.Equal(parts[0].SHA256, sum) {
		t.Fatalf("ListParts = %+v, %v", parts, err)
	}
	if _, err := s.CompleteUpload(ctx, "u/obj", id, parts); err != nil {
		t.Fatal(err)
	}
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
