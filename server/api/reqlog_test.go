package api_test

import (
	"testing"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// TestHeartbeatsAreNotLogged: a relay's successful heartbeats (one every
// 2 s by default) write no api_requests row; refused ones do.
func TestHeartbeatsAreNotLogged(t *testing.T) {
	e := newEdgeEnv(t, "", true)
	for range 3 {
		if r := e.signed(e.keys, "edge_a", "POST", protocol.PathEdgeHeartbeat, heartbeat("edge_a"), time.Now()); r.status != 200 {
			t.Fatalf("heartbeat: %d %s", r.status, r.raw)
		}
	}
	wantError(t, e.do("POST", protocol.PathEdgeHeartbeat, `{"id":"edge_a"}`, nil), 401, "unauthorized")
	if err := e.api.FlushRequestLog(t.Context()); err != nil {
		t.Fatal(err)
	}
	rows, err := e.store.RecentRequests(t.Context(), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	var logged []int
	for _, r := range rows {
		if r.Endpoint == "POST "+protocol.PathEdgeHeartbeat {
			logged = append(logged, r.StatusCode)
		}
	}
	if len(logged) != 1 || logged[0] != 401 {
		t.Fatalf("heartbeat rows with statuses %v, want only the refused one (401)", logged)
	}
}
