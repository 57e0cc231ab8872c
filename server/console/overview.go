package console

import "net/http"

// handleOverview shows the overview page (GET /console/).
func (c *Console) handleOverview(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, "overview", nil)
}
