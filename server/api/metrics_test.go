package api_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jettythunder/jetty/server/api"
)

const metricsToken = "metrics_token_9c4e1a7b3f5d2e8c6a0b4f1d7e3a9c5b"

// TestMetricsAccess: a production server shows /metrics to nobody on its
// main listener unless a token is set (then only with it, compared in
// constant time); --dev shows them to anyone; MetricsHandler (the
// separate listener) serves them, with the token when one is set.
func TestMetricsAccess(t *testing.T) {
	b := backends()[0]
	const series = "jetty_uploaded_bytes_total"
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

	prod := newEnvConfig(t, b.store(t), b.limit(t), nil, nil, nil)
	r := prod.do("GET", "/metrics", "", nil)
	if r.status != 404 || strings.Contains(r.raw, series) || !strings.Contains(r.raw, "JETTY_METRICS_LISTEN") || !strings.Contains(r.raw, "JETTY_METRICS_TOKEN") {
		t.Fatalf("production default: %d %s", r.status, r.raw)
	}
	sep := httptest.NewServer(prod.api.MetricsHandler())
	defer sep.Close()
	if r := (&env{t: t, url: sep.URL}).do("GET", "/metrics", "", nil); r.status != 200 || !strings.Contains(r.raw, series) {
		t.Fatalf("separate listener: %d %.200s", r.status, r.raw)
	}

	tok := newEnvConfig(t, b.store(t), b.limit(t), nil, nil, func(c *api.Config) { c.MetricsToken = metricsToken })
	for name, h := range map[string]map[string]string{
		"none":   nil,
		"wrong":  bearer(metricsToken[:len(metricsToken)-1] + "x"),
		"prefix": bearer(metricsToken[:10]),
		"basic":  {"Authorization": "Basic " + metricsToken},
	} {
		if r := tok.do("GET", "/metrics", "", h); r.status != 401 || strings.Contains(r.raw, series) || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("token set, %s: %d %.200s", name, r.status, r.raw)
		}
	}
	if r := tok.do("GET", "/metrics", "", bearer(metricsToken)); r.status != 200 || !strings.Contains(r.raw, series) {
		t.Fatalf("right token: %d %.200s", r.status, r.raw)
	}
	sepTok := httptest.NewServer(tok.api.MetricsHandler())
	defer sepTok.Close()
	if r := (&env{t: t, url: sepTok.URL}).do("GET", "/metrics", "", nil); r.status != 401 {
		t.Fatalf("separate listener with a token, none sent: %d", r.status)
	}

	dev := newEnvConfig(t, b.store(t), b.limit(t), nil, nil, func(c *api.Config) { c.MetricsPublic = true })
	if r := dev.do("GET", "/metrics", "", nil); r.status != 200 || !strings.Contains(r.raw, series) {
		t.Fatalf("dev: %d %.200s", r.status, r.raw)
	}
}
