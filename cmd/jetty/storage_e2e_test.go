package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/blob/fsblob"
	"github.com/jettythunder/jetty/server/blob/s3blob"
	"github.com/jettythunder/jetty/server/jobs"
	"github.com/jettythunder/jetty/server/sqlstore"
)

const e2eSecret = "whsec_e2e_test_bbc7650ce333c70a5f425eec89abbea0"

// e2eTokenSecret signs upload tokens where REDIS_URL is set (jetty server
// then refuses to start without a shared key).
const e2eTokenSecret = "tok_e2e_test_58d1f0c2a7b94e3d6c05a9e81f27b4c6"

// deployment is a server configuration a child process runs with, and
// direct handles on its database and object store for checking.
type deployment struct {
	name  string
	env   []string
	args  []string
	store server.Store
	blobs blob.Store
}

func deployments(t testing.TB) []func(t testing.TB) deployment {
	return []func(t testing.TB) deployment{
		func(t testing.TB) deployment {
			dir := t.TempDir()
			st, err := sqlstore.Open(context.Background(), dir+"/jetty.db")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			fs, err := fsblob.New(dir + "/blobs")
			if err != nil {
				t.Fatal(err)
			}
			return deployment{
				name:  "sqlite+fs",
				env:   []string{"AGENTCACHE_WEBHOOK_SECRET=" + e2eSecret, "DATABASE_URL=", "LYVE_ENDPOINT=", "REDIS_URL="},
				args:  []string{"server", "--listen", "127.0.0.1:0", "--data-dir", dir},
				store: st, blobs: fs,
			}
		},
		func(t testing.TB) deployment {
			pg := testenv.PostgresURL(t)
			m := testenv.MinIO(t)
			st, err := sqlstore.Open(context.Background(), pg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			s3, err := s3blob.New(context.Background(), s3blob.Config{Endpoint: m.Endpoint, Region: m.Region, AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, Bucket: m.Bucket})
			if err != nil {
				t.Fatal(err)
			}
			return deployment{
				name: "postgres+s3+redis",
				env: []string{"AGENTCACHE_WEBHOOK_SECRET=" + e2eSecret, "DATABASE_URL=" + pg, "REDIS_URL=" + testenv.RedisURL(t), "JETTY_TOKEN_SECRET=" + e2eTokenSecret,
					"LYVE_ENDPOINT=" + m.Endpoint, "LYVE_REGION=" + m.Region, "LYVE_ACCESS_KEY=" + m.AccessKey,
					"LYVE_SECRET_KEY=" + m.SecretKey, "LYVE_BUCKET_NAME=" + m.Bucket},
				args:  []string{"server", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()},
				store: st, blobs: s3,
			}
		},
	}
}

// TestServerKilledMidUpload: kill -9 the server while a chunked upload
// streams: nothing becomes visible, and one cleanup pass leaves no
// reservation, no object, no multipart part and no temp file behind.
func TestServerKilledMidUpload(t *testing.T) {
	for _, mk := range deployments(t) {
		d := mk(t)
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			c := startChild(t, d.env, d.args...)
			key, secret := testenv.Provision(t, c.url, e2eSecret, "usr_killed", "enterprise")

			pr, pw := io.Pipe()
			req, _ := http.NewRequest("POST", c.url+"/api/storage/upload", pr)
			req.ContentLength = -1 // chunked: the server reserves the tier's max
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("X-API-Secret", secret)
			req.Header.Set("X-Filename", "killed.bin")
			done := make(chan error, 1)
			go func() {
				res, err := http.DefaultClient.Do(req)
				if err == nil {
					res.Body.Close()
					err = errors.New("upload finished: " + res.Status)
				}
				done <- err
			}()
			// 40 MiB: several S3 parts have been uploaded by now.
			src := testenv.NewRandReader(9, 40<<20)
			if _, err := io.Copy(pw, src); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond) // let the server pass the bytes on
			c.kill()
			pw.CloseWithError(errors.New("client gives up"))
			<-done

			acct, err := d.store.AccountByUserID(ctx, "usr_killed")
			if err != nil {
				t.Fatal(err)
			}
			if acct.StorageReservedBytes == 0 {
				t.Fatal("no reservation was held: the upload never started")
			}
			if objs, _ := d.blobs.List(ctx, "users/usr_killed/"); len(objs) != 0 {
				t.Fatalf("visible objects after the kill: %+v", objs)
			}
			if page, _ := d.store.ListAssets(ctx, acct.ID, server.AssetFilter{}, "", 10); len(page.Assets) != 0 {
				t.Fatalf("assets recorded after the kill: %+v", page.Assets)
			}
			ups, _ := d.blobs.ListUploads(ctx, "users/", time.Time{})
			t.Logf("after the kill: %d bytes reserved, %d multipart uploads pending", acct.StorageReservedBytes, len(ups))

			// One cleanup pass, a day later (past every deadline).
			r := &jobs.Runner{Store: d.store, Blobs: d.blobs, Holder: "test", Now: func() time.Time { return time.Now().Add(25 * time.Hour) }}
			rep, err := r.RunOnce(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("cleanup: %+v", rep)
			acct, _ = d.store.AccountByUserID(ctx, "usr_killed")
			if acct.StorageReservedBytes != 0 || acct.StorageUsedBytes != 0 {
				t.Fatalf("after cleanup: reserved %d used %d", acct.StorageReservedBytes, acct.StorageUsedBytes)
			}
			if ups, _ := d.blobs.ListUploads(ctx, "users/", time.Time{}); len(ups) != 0 {
				t.Fatalf("orphaned multipart uploads after cleanup: %+v", ups)
			}
			if objs, _ := d.blobs.List(ctx, ""); len(objs) != 0 {
				t.Fatalf("objects after cleanup: %+v", objs)
			}
			if fs, ok := d.blobs.(*fsblob.Store); ok {
				if n, err := fs.CleanTemp(time.Now().Add(time.Hour)); err != nil || n != 0 {
					t.Fatalf("temp files left after cleanup: %d %v", n, err)
				}
			}
		})
	}
}
