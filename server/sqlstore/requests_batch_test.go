package sqlstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
)

// TestLogRequestsLargeBatch: a batch of more rows than one INSERT takes
// is stored whole, every row with its own values.
func TestLogRequestsLargeBatch(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		s := openT(t, dsn)
		defer s.Close()
		ctx := testCtx(t)
		const n = 2*logRowsPerInsert + 7
		at := time.Date(2026, 11, 2, 3, 4, 5, 0, time.UTC)
		reqs := make([]server.APIRequest, n)
		for i := range reqs {
			reqs[i] = server.APIRequest{Method: "GET", Endpoint: fmt.Sprintf("/r/%d", i), StatusCode: 200 + i%3,
				ResponseTimeMS: int64(i), BytesTransferred: int64(10 * i), CreatedAt: at.Add(time.Duration(i) * time.Second)}
		}
		if err := s.LogRequests(ctx, reqs); err != nil {
			t.Fatalf("LogRequests: %v", err)
		}
		var rows, sumMS, sumBytes int64
		if err := s.rdb.QueryRowContext(ctx, `SELECT count(*), sum(response_time_ms), sum(bytes_transferred) FROM api_requests`).Scan(&rows, &sumMS, &sumBytes); err != nil {
			t.Fatal(err)
		}
		if want := int64(n * (n - 1) / 2); rows != n || sumMS != want || sumBytes != 10*want {
			t.Fatalf("%d rows, response times %d, bytes %d; want %d, %d, %d", rows, sumMS, sumBytes, n, want, 10*want)
		}
		got, err := s.RecentRequests(ctx, "", 1)
		if err != nil || len(got) != 1 || got[0].Endpoint != fmt.Sprintf("/r/%d", n-1) || got[0].StatusCode != 200+(n-1)%3 {
			t.Fatalf("newest request = %+v, %v", got, err)
		}
	})
}
