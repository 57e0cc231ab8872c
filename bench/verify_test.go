package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/blob/s3blob"
)

// BenchmarkVerifyWholeFile measures what each way of verifying an
// uploaded file costs the server at complete, on the same 256 MiB object
// (32 parts of 8 MiB) in MinIO (docs/decisions.md, "Trust under hostile
// input"):
//
//   - s3-reread: read the assembled object back and hash it, the only way
//     to verify the whole-file SHA-256 of a multipart object on S3;
//   - chunk-list-id: the id the server records instead, computed from
//     the chunk hashes storage already verified.
//
// go test -run '^$' -bench BenchmarkVerifyWholeFile -benchtime 3x ./bench
func BenchmarkVerifyWholeFile(b *testing.B) {
	const size, part = 256 << 20, 8 << 20
	m := testenv.MinIO(b)
	ctx := context.Background()
	st, err := s3blob.New(ctx, s3blob.Config{Endpoint: m.Endpoint, Region: m.Region, AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, Bucket: m.Bucket})
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Setup(ctx); err != nil {
		b.Fatal(err)
	}
	data, _ := io.ReadAll(testenv.NewRandReader(77, size))
	man, err := engine.Plan(ctx, bytes.NewReader(data), size, part, engine.PlanOptions{Name: "v.bin"})
	if err != nil {
		b.Fatal(err)
	}
	key := "users/bench/verify.bin"
	id, err := st.CreateUpload(ctx, key, "")
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range man.Chunks {
		sum, _ := hex.DecodeString(c.SHA256)
		if _, err := st.PutPart(ctx, key, id, c.Index+1, bytes.NewReader(data[c.Offset:c.Offset+c.Size]), c.Size, sum); err != nil {
			b.Fatal(err)
		}
	}
	parts, err := st.ListParts(ctx, key, id)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.CompleteUpload(ctx, key, id, parts); err != nil {
		b.Fatal(err)
	}

	b.Run("s3-reread", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			rc, _, err := st.Get(ctx, key, 0, -1)
			if err != nil {
				b.Fatal(err)
			}
			h := sha256.New()
			if _, err := io.Copy(h, rc); err != nil {
				b.Fatal(err)
			}
			rc.Close()
			if hex.EncodeToString(h.Sum(nil)) != man.SHA256 {
				b.Fatal("the object does not hash to the manifest")
			}
		}
	})
	b.Run("chunk-list-id", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if id := man.ChunkListID(); len(id) != 67 {
				b.Fatal(id)
			}
		}
	})
}
