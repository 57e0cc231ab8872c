package testenv

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// Provision creates an account on the server at baseURL through the
// partner API and returns its API key and secret.
func Provision(t testing.TB, baseURL, webhookSecret, userID, tier string) (key, secret string) {
	t.Helper()
	body := `{"agentcache_user_id":"` + userID + `","agentcache_email":"` + userID + `@example.com","tier":"` + tier + `"}`
	req, err := http.NewRequest("POST", baseURL+"/api/agentcache/provision", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+webhookSecret)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		Account struct {
			APIKey    string `json:"api_key"`
			APISecret string `json:"api_secret"`
		} `json:"account"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("provision %s: %s %v", userID, res.Status, err)
	}
	return out.Account.APIKey, out.Account.APISecret
}
