package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/apikey"
	"github.com/jettythunder/jetty/server/blob"
	"github.com/jettythunder/jetty/server/blob/fsblob"
	"github.com/jettythunder/jetty/server/blob/s3blob"
	"github.com/jettythunder/jetty/server/sqlstore"
)

// BenchmarkPurge measures the purge of a deleted account holding
// JETTY_BENCH_OBJECTS (default 2000) objects of 1 KiB, on SQLite + files
// and PostgreSQL + MinIO: the time of the passes (each at most 5000
// objects) until the account is purged. Figures only: docs/RELIABILITY.md,
// section 16.
//
//	go test -run '^$' -bench Purge -benchtime 1x ./server/jobs
func BenchmarkPurge(b *testing.B) {
	n := 2000
	if v := os.Getenv("JETTY_BENCH_OBJECTS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	ctx := context.Background()
	for _, dep := range []string{"sqlite+fs", "postgres+s3"} {
		b.Run(dep, func(b *testing.B) {
			var (
				st *sqlstore.Store
				bs blob.Store
			)
			var err error
			if dep == "sqlite+fs" {
				st, err = sqlstore.Open(ctx, testenv.SQLitePath(b))
				if err == nil {
					bs, err = fsblob.New(b.TempDir())
				}
			} else {
				st, err = sqlstore.Open(ctx, testenv.PostgresURL(b))
				if err == nil {
					m := testenv.MinIO(b)
					bs, err = s3blob.New(ctx, s3blob.Config{Endpoint: m.Endpoint, Region: m.Region, AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, Bucket: m.Bucket})
				}
			}
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			if err := bs.Setup(ctx); err != nil {
				b.Fatal(err)
			}
			key, _ := apikey.NewKey(false)
			secret, _ := apikey.NewSecret()
			const user = "usr_bench"
			a, err := st.CreateAccount(ctx, server.NewAccount{UserID: user, Email: "b@example.com", Tier: "enterprise", APIKey: key,
				SecretHash: apikey.HashSecret(secret), S3Bucket: "b", S3Prefix: server.AccountPrefix(user)})
			if err != nil {
				b.Fatal(err)
			}
			seed := time.Now()
			for i := range n {
				k := fmt.Sprintf("%s%d-%06d.bin", server.AccountPrefix(user), seed.UnixMilli(), i)
				content := fmt.Sprintf("%-1024d", i)
				if err := st.AddPendingObject(ctx, k, "", time.Now().Add(time.Hour)); err != nil {
					b.Fatal(err)
				}
				if _, _, err := bs.Put(ctx, k, strings.NewReader(content), int64(len(content)), ""); err != nil {
					b.Fatal(err)
				}
				sum := sha256.Sum256([]byte(content))
				if _, _, err := st.CreateAsset(ctx, server.NewAsset{AccountID: a.ID, ObjectKey: k, Bucket: "b", Filename: "f",
					Size: int64(len(content)), SHA256: hex.EncodeToString(sum[:]), SHA256Verified: true}, ""); err != nil {
					b.Fatal(err)
				}
			}
			b.Logf("%s: seeded %d objects in %s", dep, n, time.Since(seed).Round(time.Millisecond))
			del, err := st.SetStatus(ctx, user, server.StatusDeleted)
			if err != nil {
				b.Fatal(err)
			}
			r := &Runner{Store: st, Blobs: bs, Holder: "bench", DeletedAccountGrace: time.Hour,
				Now: func() time.Time { return del.DeletedAt.Add(2 * time.Hour) }}
			b.ResetTimer()
			start := time.Now()
			removed, passes := 0, 0
			for {
				passes++
				pass := time.Now()
				rep, err := r.RunOnce(ctx)
				if err != nil {
					b.Fatal(err)
				}
				removed += rep.PurgedObjects
				b.Logf("pass %d: %d objects removed in %s", passes, rep.PurgedObjects, time.Since(pass).Round(time.Millisecond))
				if rep.AccountsPurged == 1 {
					break
				}
				if passes > n/1000+5 {
					b.Fatal("not purged")
				}
			}
			total := time.Since(start)
			b.StopTimer()
			if removed != n {
				b.Fatalf("removed %d, want %d", removed, n)
			}
			b.ReportMetric(total.Seconds(), "s/purge")
			b.ReportMetric(float64(n)/total.Seconds(), "objects/s")
			b.Logf("%s: purged %d objects in %s (%d passes)", dep, n, total.Round(time.Millisecond), passes)
		})
	}
}
