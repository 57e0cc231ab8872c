package sqlstore

import (
	"strings"
	"testing"
	"time"

	"github.com/jettythunder/jetty/server"
)

// TestUploadSessionsSchema checks what the conformance suite cannot see:
// the state check constraint, the completed-needs-an-asset constraint,
// and that deleting an account deletes its sessions.
func TestUploadSessionsSchema(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		s := openT(t, dsn)
		defer s.Close()
		ctx := testCtx(t)
		a := newTestAccount(t, s, "usr_sessions")
		u, err := s.CreateSession(ctx, server.UploadSession{
			AccountID: a.ID, ObjectKey: "users/usr_sessions/1-x.bin", Size: -1, ChunkSize: 8 << 20,
			ExpiresAt: time.Now().Add(time.Hour),
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{
			`UPDATE upload_sessions SET state = 'expired' WHERE id = ?`,
			`UPDATE upload_sessions SET state = 'completed' WHERE id = ?`, // no asset id
			`UPDATE upload_sessions SET size_bytes = -2 WHERE id = ?`,
		} {
			if _, err := s.db.ExecContext(ctx, s.q(bad), u.ID); err == nil || !strings.Contains(strings.ToLower(err.Error()), "check") {
				t.Errorf("%s: %v, want a check constraint violation", bad, err)
			}
		}
		if n := count(t, s, `SELECT count(*) FROM upload_sessions WHERE account_id = ?`, a.ID); n != 1 {
			t.Fatalf("%d sessions, want 1", n)
		}
		if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM agentcache_accounts WHERE id = ?`), a.ID); err != nil {
			t.Fatal(err)
		}
		if n := count(t, s, `SELECT count(*) FROM upload_sessions WHERE account_id = ?`, a.ID); n != 0 {
			t.Errorf("%d sessions left after deleting their account, want 0", n)
		}
	})
}
