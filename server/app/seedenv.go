package app

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jettythunder/jetty/server/api"
)

// Seed 002's environment (its ".env" section) beside the variables read
// elsewhere in FromEnv: RATE_LIMIT_MAX_REQUESTS and RATE_LIMIT_WINDOW_MS
// (a server-wide ceiling beside the tiers' limits, see api.RateCeiling),
// JETTYSPEED_ENABLED (false turns chunked uploads off), and the ones that
// mean nothing here, named in a startup warning rather than ignored
// without a word (docs/decisions.md, issue 19).

// DefaultRateLimitWindow is RATE_LIMIT_WINDOW_MS's default (the seed's
// 60000).
const DefaultRateLimitWindow = time.Minute

// seedEnv reads the seed's variables into c. A malformed value is kept in
// c.envErr for validate.
func (c *Config) seedEnv(getenv func(string) string) {
	fail := func(format string, args ...any) {
		if c.envErr == nil {
			c.envErr = fmt.Errorf(format, args...)
		}
	}
	if v := strings.TrimSpace(getenv("RATE_LIMIT_MAX_REQUESTS")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1_000_000_000 {
			fail("RATE_LIMIT_MAX_REQUESTS=%q: give a whole number of requests, at least 1 (such as 100), or leave it unset for no server-wide ceiling", v)
		}
		c.RateLimitMax = n
	}
	if v := strings.TrimSpace(getenv("RATE_LIMIT_WINDOW_MS")); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 1000 || ms > 24*3600*1000 {
			fail("RATE_LIMIT_WINDOW_MS=%q: give milliseconds from 1000 to 86400000 (such as 60000)", v)
		}
		c.RateLimitWindow = time.Duration(ms) * time.Millisecond
		if c.RateLimitMax == 0 {
			c.unusedEnv = append(c.unusedEnv, unusedVar{"RATE_LIMIT_WINDOW_MS", "it applies only with RATE_LIMIT_MAX_REQUESTS, which is not set"})
		}
	}
	switch v := strings.ToLower(strings.TrimSpace(getenv("JETTYSPEED_ENABLED"))); v {
	case "", "true", "1", "yes", "on":
	case "false", "0", "no", "off":
		c.JettySpeedDisabled = true
	default:
		fail("JETTYSPEED_ENABLED=%q: give true or false", v)
	}
	for _, u := range []unusedVar{
		{"JETTYSPEED_CDN_URL", "chunks go to this server, to the object store directly or to the relays that register with it (jetty edge, JETTY_EDGE_SECRET); there is no CDN address to set"},
		{"AGENTCACHE_API_URL", "this server does not call AgentCache's API"},
		{"NODE_ENV", "API keys are jt_live_ unless JETTY_KEY_ENV=test or --dev"},
	} {
		if getenv(u.name) != "" {
			c.unusedEnv = append(c.unusedEnv, u)
		}
	}
	if getenv("LYVE_ENDPOINT") == "" {
		for _, n := range []string{"LYVE_REGION", "LYVE_ACCESS_KEY_ID", "LYVE_ACCESS_KEY", "LYVE_SECRET_ACCESS_KEY", "LYVE_SECRET_KEY", "LYVE_PATH_STYLE", "JETTY_S3_PUBLIC_ENDPOINT"} {
			if getenv(n) != "" {
				c.unusedEnv = append(c.unusedEnv, unusedVar{n, "LYVE_ENDPOINT is not set, so objects are files under the data directory"})
			}
		}
	}
}

// unusedVar is a variable that is set but has no effect, and why.
type unusedVar struct{ name, why string }

// checkSeedEnv validates what seedEnv and the flags set: the CORS origins
// and the rate-limit ceiling.
func (c *Config) checkSeedEnv() error {
	origins, err := api.ParseCORSOrigins(c.CORSOrigins)
	if err != nil {
		return err
	}
	c.corsOrigins = origins
	if c.RateLimitMax < 0 {
		return fmt.Errorf("RATE_LIMIT_MAX_REQUESTS must be at least 1")
	}
	if c.RateLimitMax > 0 && c.RateLimitWindow == 0 {
		c.RateLimitWindow = DefaultRateLimitWindow
	}
	if c.RateLimitWindow < 0 || (c.RateLimitWindow > 0 && c.RateLimitWindow < time.Second) {
		return fmt.Errorf("RATE_LIMIT_WINDOW_MS must be at least 1000")
	}
	return nil
}

// warnUnused logs each set variable that has no effect.
func (c *Config) warnUnused(log interface{ Warn(string, ...any) }) {
	for _, u := range c.unusedEnv {
		log.Warn("environment variable is set but has no effect", "var", u.name, "why", u.why)
	}
}
