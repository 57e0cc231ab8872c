package console

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/jettythunder/jetty/server"
	"github.com/jettythunder/jetty/server/apikey"
)

// searchLimit is the most accounts one search lists.
const searchLimit = 50

// accountsData is the data of the accounts page.
type accountsData struct {
	Query    string
	Accounts []server.Account
	More     bool // the list was cut at searchLimit
}

// handleAccounts searches accounts by AgentCache user id or email, exact
// or prefix (GET /console/accounts?q=); without q, the newest accounts.
func (c *Console) handleAccounts(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if len(q) > 255 {
		q = q[:255]
	}
	accts, err := c.store.SearchAccounts(r.Context(), q, searchLimit+1)
	if err != nil {
		c.serverError(w, r, err)
		return
	}
	d := accountsData{Query: q, Accounts: accts}
	if len(accts) > searchLimit {
		d.Accounts, d.More = accts[:searchLimit], true
	}
	c.render(w, r, "accounts", d)
}

// accountData is the data of one account's page.
type accountData struct {
	Account     server.Account
	Tiers       []server.Tier
	Assets      []server.Asset
	MoreAssets  bool
	Webhooks    []server.WebhookEvent
	KeyPrefix   string // the API key, redacted
	PrevPrefix  string // the previous key of a rotation's overlap, redacted
	PrevLive    bool   // the previous key still works
	StorageUsed int64  // used + reserved
}

// account loads the account of the path's {id}; 404 when there is none.
func (c *Console) account(w http.ResponseWriter, r *http.Request) (server.Account, bool) {
	a, err := c.store.AccountByID(r.Context(), r.PathValue("id"))
	if server.ErrorCode(err) == server.ENotFound {
		c.fail(w, r, http.StatusNotFound, "There is no such account.")
		return a, false
	}
	if err != nil {
		c.serverError(w, r, err)
		return a, false
	}
	return a, true
}

// handleAccount shows one account: tier, usage against quota, the newest
// files with their upload speed and route, credentials' state, webhook
// deliveries, and the operator actions.
func (c *Console) handleAccount(w http.ResponseWriter, r *http.Request) {
	a, ok := c.account(w, r)
	if !ok {
		return
	}
	d, err := c.accountPage(r.Context(), a)
	if err != nil {
		c.serverError(w, r, err)
		return
	}
	c.render(w, r, "account", d)
}

func (c *Console) accountPage(ctx context.Context, a server.Account) (accountData, error) {
	d := accountData{Account: a, KeyPrefix: apikey.Redact(a.APIKey), StorageUsed: a.StorageUsedBytes + a.StorageReservedBytes}
	if a.PrevAPIKey != "" {
		d.PrevPrefix = apikey.Redact(a.PrevAPIKey)
		d.PrevLive = c.now().Before(a.PrevKeyExpiresAt)
	}
	var err error
	if d.Tiers, err = c.store.Tiers(ctx); err != nil {
		return d, err
	}
	page, err := c.store.ListAssets(ctx, a.ID, server.AssetFilter{}, "", 20)
	if err != nil {
		return d, err
	}
	d.Assets, d.MoreAssets = page.Assets, page.Next != ""
	if d.Webhooks, err = c.store.WebhookEvents(ctx, a.ID, 20); err != nil {
		return d, err
	}
	return d, nil
}

// actions are the operator actions, by the form's "action" value, with
// what the confirmation says.
var actions = map[string]string{
	"upgrade":    "Change the tier",
	"suspend":    "Suspend the account: its API calls are refused until it is reactivated",
	"reactivate": "Reactivate the account: its API calls work again",
	"rotate":     "Issue a new API key and secret",
	"revoke":     "Revoke the previous key and secret of a rotation's overlap",
}

// overlaps are the overlap windows a rotation may keep the old pair for.
var overlaps = map[string]time.Duration{"0": 0, "3600": time.Hour, "86400": 24 * time.Hour}

// actionData is the data of the confirmation and the result pages.
type actionData struct {
	Account server.Account
	Action  string
	Says    string
	Tier    string
	Overlap string
	Error   string
	Secret  string // a rotation's new secret, shown this once
}

// handleAction runs an operator action on an account. Without
// confirm=yes it answers the confirmation page (a second POST with the
// same fields and confirm=yes); with it, the action runs through the
// partner API's own operations, is audited, and the result page shows
// what happened (a rotation's new secret, once).
func (c *Console) handleAction(w http.ResponseWriter, r *http.Request) {
	a, ok := c.account(w, r)
	if !ok {
		return
	}
	act := r.PostFormValue("action")
	says, known := actions[act]
	if !known {
		c.fail(w, r, http.StatusBadRequest, "There is no such action.")
		return
	}
	d := actionData{Account: a, Action: act, Says: says, Tier: r.PostFormValue("tier"), Overlap: r.PostFormValue("overlap")}
	if d.Overlap == "" {
		d.Overlap = "0"
	}
	overlap, okOverlap := overlaps[d.Overlap]
	if act == "upgrade" && server.ValidateTierName(d.Tier) != nil || act == "rotate" && !okOverlap {
		c.fail(w, r, http.StatusBadRequest, "Pick a tier (or an overlap) from the list.")
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		c.render(w, r, "confirm", d)
		return
	}
	s, _ := sessionFrom(r.Context())
	ctx := r.Context()
	var err error
	ops := c.deps.Accounts
	detail := ""
	switch act {
	case "upgrade":
		a, err = ops.ChangeTier(ctx, a.UserID, d.Tier)
		detail = "tier " + d.Tier
	case "suspend":
		a, err = ops.SetStatus(ctx, a.UserID, server.StatusSuspended)
	case "reactivate":
		a, err = ops.SetStatus(ctx, a.UserID, server.StatusActive)
	case "rotate":
		a, d.Secret, err = ops.Rotate(ctx, a.UserID, overlap)
		detail = "overlap " + overlap.String()
	case "revoke":
		a, err = ops.RevokePrevious(ctx, a.UserID)
	}
	result := "ok"
	if err != nil {
		result = server.ErrorCode(err)
	}
	c.audit(ctx, server.AuditEntry{Actor: s.short, Action: act, Target: d.Account.UserID, Result: result, IP: clientIP(r), Detail: detail})
	if err != nil {
		if result == server.EInternal || result == server.EUnavailable {
			c.serverError(w, r, err)
			return
		}
		d.Error = server.ErrorMessage(err)
		c.renderStatus(w, r, http.StatusConflict, "result", d)
		return
	}
	c.log.Info("console: operator action", "action", act, "account", a.ID, "user_id", a.UserID, "operator", s.short)
	d.Account = a
	c.render(w, r, "result", d)
}
