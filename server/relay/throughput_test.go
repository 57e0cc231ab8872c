package relay

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/server/app"
)

// TestRelayReportsThroughput: a heartbeat after a chunk went through the
// relay reports the chunk's bytes and a throughput, and the origin keeps
// both (issue 22: the console's Edges page shows them).
func TestRelayReportsThroughput(t *testing.T) {
	o := startOrigin(t, app.Config{})
	// The ticker's heartbeats are a minute apart: the test sends its own.
	r := newRelay(t, o, "edge_rate", func(c *Config) { c.Interval = time.Minute })
	base := serve(t, r)
	data, _ := io.ReadAll(testenv.NewRandReader(5, 1<<20))
	s, m := openSession(t, o, data)
	if a := put(t, base, s.ID, 0, s.UploadToken, m.Chunks[0].SHA256, data, int64(len(data))); a.status != 200 {
		t.Fatalf("chunk through the relay: %+v", a)
	}
	if err := r.heartbeat(context.Background()); err != nil {
		t.Fatal(err)
	}
	nodes, err := o.app.Store().EdgeNodes(context.Background())
	if err != nil || len(nodes) != 1 {
		t.Fatalf("EdgeNodes = %+v, %v", nodes, err)
	}
	if n := nodes[0]; n.BytesIn != int64(len(data)) || n.Throughput <= 0 {
		t.Fatalf("node after a chunk of %d bytes: bytes_in %d, throughput %d B/s; want the chunk's bytes and a positive rate", len(data), n.BytesIn, n.Throughput)
	}
}
