package api

import (
	"context"
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server"
)

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

func usage(used, reserved, quota int64, quotaGB int64) protocol.Usage {
	avail := quota - used - reserved
	if avail < 0 {
		avail = 0
	}
	pct := 0.0
	switch {
	case quota > 0:
		pct = float64(used+reserved) / float64(quota) * 100
	case used+reserved > 0:
		pct = 100
	}
	pct = round(pct, 1)
	return protocol.Usage{
		UsedGB:         round(float64(used)/float64(server.GiB), 2),
		QuotaGB:        quotaGB,
		AvailableGB:    round(float64(avail)/float64(server.GiB), 2),
		Percent:        pct,
		PercentUsed:    pct,
		UsedBytes:      used,
		ReservedBytes:  reserved,
		QuotaBytes:     quota,
		AvailableBytes: avail,
	}
}

// handleQuota answers GET /api/agentcache/quota.
func (s *Server) handleQuota(w http.ResponseWriter, r *http.Request, acct server.Account) {
	t, err := s.tier(r.Context(), acct.Tier)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var q protocol.Quota
	q.Tier = acct.Tier
	q.Status = string(acct.Status)
	q.JettySpeedEnabled = acct.JettySpeedEnabled && !s.jettySpeedOff
	q.Storage = usage(acct.StorageUsedBytes, acct.StorageReservedBytes, acct.StorageQuotaBytes(), acct.StorageQuotaGB)
	q.Bandwidth = usage(acct.BandwidthUsedBytes, 0, acct.BandwidthQuotaBytes(), acct.BandwidthQuotaGB)
	q.Limits.MaxFileSizeMB = t.MaxFileSizeMB
	q.Limits.MaxFileSizeBytes = t.MaxFileSizeBytes()
	q.Limits.RateLimitPerMinute = t.RateLimitPerMinute
	if tiers, err := s.store.Tiers(r.Context()); err == nil {
		for _, c := range tiers {
			q.Tiers = append(q.Tiers, protocol.TierLimits{Tier: c.Name, StorageQuotaBytes: c.StorageQuotaBytes(), MaxFileSizeBytes: c.MaxFileSizeBytes()})
		}
		sort.SliceStable(q.Tiers, func(i, j int) bool { return q.Tiers[i].StorageQuotaBytes < q.Tiers[j].StorageQuotaBytes })
	}
	writeJSON(w, http.StatusOK, q)
}

// handleWhoami tells the caller which account its credentials belong to.
func (s *Server) handleWhoami(w http.ResponseWriter, r *http.Request, acct server.Account) {
	writeJSON(w, http.StatusOK, protocol.Whoami{
		AccountID:         acct.ID,
		UserID:            acct.UserID,
		Email:             acct.Email,
		Tier:              acct.Tier,
		Status:            string(acct.Status),
		JettySpeedEnabled: acct.JettySpeedEnabled && !s.jettySpeedOff,
		S3Prefix:          acct.S3Prefix,
		CreatedAt:         acct.CreatedAt.UTC(),
	})
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// pinger is implemented by adapters that can check their connection.
type pinger interface {
	Ping(ctx context.Context) error
}

// SetDraining marks the server as shutting down: from then on /readyz
// answers 503 with "draining" (the server still serves every request
// while its load balancers take it out of rotation; see app.Serve).
func (s *Server) SetDraining() { s.draining.Store(true) }

// handleReadyz checks the database (and the limiter when it can be
// pinged) within two seconds. A draining server is not ready, whatever
// its parts say.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "status": "draining", "checks": map[string]string{"server": "draining"}})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{}
	ok := true
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("readyz: database", "err", err)
		checks["database"] = "unavailable"
		ok = false
	} else {
		checks["database"] = "ok"
	}
	if p, isPinger := s.limiter.(pinger); isPinger {
		if err := p.Ping(ctx); err != nil {
			s.log.Warn("readyz: limiter", "err", err)
			checks["limiter"] = "unavailable"
			ok = false
		} else {
			checks["limiter"] = "ok"
		}
	}
	if s.blobs != nil {
		if st, up := s.storageReadiness(ctx); st != "" {
			checks["storage"] = st
			ok = ok && up
		}
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"ready": ok, "checks": checks})
}
