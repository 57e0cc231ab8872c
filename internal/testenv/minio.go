package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// MinIOVersion is the pinned MinIO module version scripts/minio.sh installs.
const MinIOVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"

// S3 is where a test's S3-compatible bucket lives. It is a plain struct so
// that testenv does not import server/blob/s3blob.
type S3 struct {
	Endpoint  string // http://127.0.0.1:PORT
	Region    string
	AccessKey string
	SecretKey string
	Bucket    string // unique to the test; not created (Store.Setup does that)
}

type minioServer struct {
	endpoint, access, secret string
	err                      error
}

var (
	minioOnce sync.Once
	minioSrv  minioServer
)

// ToolsBin is the directory the project's scripts install tools into:
// $JETTY_TOOLS_BIN, else <user cache dir>/jetty-tools/bin (the same
// default as scripts/minio.sh).
func ToolsBin() string {
	if d := os.Getenv("JETTY_TOOLS_BIN"); d != "" {
		return d
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(cache, "jetty-tools", "bin")
}

// MinIOBinary finds the minio executable: $JETTY_MINIO_BIN, else the tools
// directory, else PATH.
func MinIOBinary() (string, error) {
	if p := os.Getenv("JETTY_MINIO_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("JETTY_MINIO_BIN: %w", err)
		}
		return p, nil
	}
	if d := ToolsBin(); d != "" {
		p := filepath.Join(d, "minio")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("minio")
	if err != nil {
		return "", fmt.Errorf("minio binary not found in $JETTY_MINIO_BIN, %s or PATH (run ./scripts/minio.sh)", ToolsBin())
	}
	return p, nil
}

// MinIO returns an S3-compatible endpoint and a bucket name unique to t.
//
// With JETTY_TEST_S3_ENDPOINT (plus JETTY_TEST_S3_ACCESS_KEY,
// JETTY_TEST_S3_SECRET_KEY, optional JETTY_TEST_S3_REGION) that server is
// used. Otherwise the first call in a test binary starts a private MinIO
// (see MinIOBinary) on free loopback ports with its data in a temporary
// directory; it is killed when the test binary exits (Pdeathsig on Linux)
// and its directory removed soon after.
// When no MinIO can be found or started the test is skipped, or fails under
// JETTY_REQUIRE_SERVICES=1.
//
// The bucket is not created (the store's Setup does that); when the test
// ends, whatever is in it (objects, multipart uploads) and the bucket itself
// are deleted.
func MinIO(t testing.TB) S3 {
	t.Helper()
	env := S3{Region: "us-east-1"}
	if ep := os.Getenv("JETTY_TEST_S3_ENDPOINT"); ep != "" {
		env.Endpoint = ep
		env.AccessKey = os.Getenv("JETTY_TEST_S3_ACCESS_KEY")
		env.SecretKey = os.Getenv("JETTY_TEST_S3_SECRET_KEY")
		if r := os.Getenv("JETTY_TEST_S3_REGION"); r != "" {
			env.Region = r
		}
	} else {
		minioOnce.Do(startMinIO)
		if minioSrv.err != nil {
			Unavailable(t, "MinIO", minioSrv.err)
		}
		env.Endpoint, env.AccessKey, env.SecretKey = minioSrv.endpoint, minioSrv.access, minioSrv.secret
	}
	env.Bucket = strings.ReplaceAll(RandomName("jt-test-"), "_", "-")
	t.Cleanup(func() { removeBucket(t, env) })
	return env
}

// S3Client returns a plain SDK client for env, for tests that need to look
// behind a store's back.
func (env S3) S3Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       env.Region,
		BaseEndpoint: aws.String(env.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(env.AccessKey, env.SecretKey, ""),
	})
}

func startMinIO() {
	bin, err := MinIOBinary()
	if err != nil {
		minioSrv.err = err
		return
	}
	sweepMinIODirs()
	for attempt := 0; attempt < 3; attempt++ {
		minioSrv, err = runMinIO(bin)
		if err == nil {
			return
		}
	}
	minioSrv.err = err
}

const minioDirPrefix = "jetty-minio-"

// sweepMinIODirs removes data directories left by earlier test binaries
// (named with their pid) whose process is gone: nothing can delete a
// directory when the test binary exits without a TestMain.
func sweepMinIODirs() { sweepDirs(minioDirPrefix) }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func runMinIO(bin string) (minioServer, error) {
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", minioDirPrefix, os.Getpid()))
	if err != nil {
		return minioServer{}, err
	}
	srv, _, err := startMinIOAt(bin, filepath.Join(dir, "data"))
	if err != nil {
		_ = os.RemoveAll(dir)
		return minioServer{}, err
	}
	reapWhenGone(dir)
	return srv, nil
}

// MinIOOn starts a MinIO of t's own whose data lives in dataDir (for
// example a SmallFS, to see a full disk) and returns an endpoint and a
// bucket name on it (not created). The server is killed when the test
// ends; when none can be started the test is skipped, or fails under
// JETTY_REQUIRE_SERVICES=1.
func MinIOOn(t testing.TB, dataDir string) S3 {
	t.Helper()
	bin, err := MinIOBinary()
	if err != nil {
		Unavailable(t, "MinIO", err)
	}
	srv, kill, err := startMinIOAt(bin, dataDir)
	if err != nil {
		Unavailable(t, "MinIO", err)
	}
	t.Cleanup(kill)
	return S3{Region: "us-east-1", Endpoint: srv.endpoint, AccessKey: srv.access, SecretKey: srv.secret,
		Bucket: strings.ReplaceAll(RandomName("jt-test-"), "_", "-")}
}

// startMinIOAt starts MinIO on free loopback ports with its data in
// dataDir and waits until it is live; kill stops it.
func startMinIOAt(bin, dataDir string) (srv minioServer, kill func(), err error) {
	apiPort, err := freePort()
	if err != nil {
		return minioServer{}, nil, err
	}
	consolePort, err := freePort()
	if err != nil {
		return minioServer{}, nil, err
	}
	srv = minioServer{
		endpoint: fmt.Sprintf("http://127.0.0.1:%d", apiPort),
		access:   "jettytest",
		secret:   RandomName("jettysecret"),
	}
	cmd := exec.Command(bin, "server", dataDir,
		"--quiet",
		"--address", fmt.Sprintf("127.0.0.1:%d", apiPort),
		"--console-address", fmt.Sprintf("127.0.0.1:%d", consolePort))
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+srv.access,
		"MINIO_ROOT_PASSWORD="+srv.secret,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CONFIG_ENV_FILE=",
	)
	out := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	setPdeathsig(cmd)

	exited, err := startChild(cmd)
	if err != nil {
		return minioServer{}, nil, fmt.Errorf("start %s: %w", bin, err)
	}
	kill = func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-exited:
			return minioServer{}, nil, fmt.Errorf("minio exited during start: %s", out.String())
		default:
		}
		resp, err := client.Get(srv.endpoint + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return srv, kill, nil
			}
		}
		if time.Now().After(deadline) {
			kill()
			return minioServer{}, nil, fmt.Errorf("minio did not become live within 60s: %s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removeBucket deletes everything in env.Bucket and the bucket itself.
func removeBucket(t testing.TB, env S3) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := env.S3Client()
	var errs []error
	up := s3.NewListMultipartUploadsPaginator(c, &s3.ListMultipartUploadsInput{Bucket: &env.Bucket})
	for up.HasMorePages() {
		page, err := up.NextPage(ctx)
		if err != nil {
			if isNoSuchBucket(err) {
				return
			}
			errs = append(errs, err)
			break
		}
		for _, u := range page.Uploads {
			_, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &env.Bucket, Key: u.Key, UploadId: u.UploadId})
			errs = append(errs, err)
		}
	}
	objs := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: &env.Bucket})
	for objs.HasMorePages() {
		page, err := objs.NextPage(ctx)
		if err != nil {
			if isNoSuchBucket(err) {
				return
			}
			errs = append(errs, err)
			break
		}
		for _, o := range page.Contents {
			_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &env.Bucket, Key: o.Key})
			errs = append(errs, err)
		}
	}
	if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &env.Bucket}); err != nil && !isNoSuchBucket(err) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		t.Logf("testenv: cleaning bucket %s: %v", env.Bucket, err)
	}
}

func isNoSuchBucket(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket"
}

// startChild starts cmd (Pdeathsig set) and returns a channel closed when
// it exits. Pdeathsig fires when the thread that started the child exits,
// not the process: the child is started from a goroutine locked to its
// thread that never unlocks, so that thread lives as long as the child.
func startChild(cmd *exec.Cmd) (<-chan struct{}, error) {
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return exited, nil
}

// WaitMinIOFull waits (at most 15 s) until the MinIO of env refuses a
// 3 MiB object up front with 507 XMinioStorageFull, as it does once it
// has noticed that its drive is full (it caches its drives' free space
// for about a second; until then a write fails half way through, with a
// 500 or a reset connection). The bucket must exist.
func WaitMinIOFull(t testing.TB, env S3) {
	t.Helper()
	c := env.S3Client()
	body := make([]byte, 3<<20)
	key := "testenv-probe/full"
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: &env.Bucket, Key: &key, Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body)))})
		cancel()
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "XMinioStorageFull" {
			return
		}
		if err == nil {
			_, _ = c.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: &env.Bucket, Key: &key})
		}
	}
	t.Fatalf("testenv: MinIO did not report its drive full within 15 s (last: %v)", err)
}
