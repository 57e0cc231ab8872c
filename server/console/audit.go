package console

import (
	"net/http"
	"strconv"

	"github.com/jettythunder/jetty/server"
)

// auditPageSize is how many entries one audit page lists.
const auditPageSize = 50

// auditData is the data of the audit page.
type auditData struct {
	Entries []server.AuditEntry
	Next    int64 // the "before" of the next (older) page; 0: none
	First   bool  // this is the newest page
}

// handleAudit lists the audit log newest first, auditPageSize a page
// (GET /console/audit?before=ID for older ones).
func (c *Console) handleAudit(w http.ResponseWriter, r *http.Request) {
	var before int64
	if v := r.URL.Query().Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			c.fail(w, r, http.StatusBadRequest, "The page asked for does not exist.")
			return
		}
		before = n
	}
	es, err := c.store.AuditEntries(r.Context(), before, auditPageSize+1)
	if err != nil {
		c.serverError(w, r, err)
		return
	}
	d := auditData{Entries: es, First: before == 0}
	if len(es) > auditPageSize {
		d.Entries = es[:auditPageSize]
		d.Next = d.Entries[auditPageSize-1].ID
	}
	c.render(w, r, "audit", d)
}
