package main

import (
	"io"
	"net/http"
	"testing"

	"github.com/jettythunder/jetty/internal/testenv"
)

// BenchmarkServerUploadRSS streams a 2 GiB upload through a real server
// process (a child of the test binary) and reports the server's peak RSS
// and throughput, for each deployment: the memory target is 100 MiB
// whatever the size. Run it with `make bench-server`.
func BenchmarkServerUploadRSS(b *testing.B) {
	const size = 2 << 30
	for _, mk := range deployments(b) {
		d := mk(b)
		b.Run(d.name, func(b *testing.B) {
			c := startChild(b, d.env, d.args...)
			key, secret := testenv.Provision(b, c.url, e2eSecret, "usr_rss", "enterprise")
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				body := testenv.NewRandReader(byte(i), size)
				req, _ := http.NewRequest("POST", c.url+"/api/storage/upload", io.NopCloser(body))
				req.ContentLength = size
				req.Header.Set("Authorization", "Bearer "+key)
				req.Header.Set("X-API-Secret", secret)
				req.Header.Set("X-Filename", "big.bin")
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 201 {
					b.Fatalf("upload: %s", res.Status)
				}
			}
			b.StopTimer()
			rss, err := c.peakRSS()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(rss)/(1<<20), "peak-rss-MiB")
			c.kill()
		})
	}
}
