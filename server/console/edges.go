package console

import "net/http"

// handleEdges shows the edges page (GET /console/edges).
func (c *Console) handleEdges(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, "edges", nil)
}
