package api

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server"
)

// CORS (docs/api.md, "CORS"): browsers on the origins of an allow-list
// (JETTY_CORS_ORIGINS) may call the user API: the account's calls, the
// storage API, upload sessions and their chunks, the edge list and the
// probe. Server-to-server routes never answer CORS: the partner calls
// (a browser must never hold AGENTCACHE_WEBHOOK_SECRET), the relay
// webhook, the relays' own calls, health and metrics. With an empty list
// the middleware is not installed at all: no CORS header anywhere, and a
// preflight answers 405 as any OPTIONS does.

// corsMaxAge is how long (seconds) a browser may keep a preflight's answer:
// ten minutes, so a change of the allow-list reaches browsers soon.
const corsMaxAge = "600"

// corsAllowHeaders are the request headers a browser may send: every one
// the API reads. Requested headers named X-Jetty-* or X-AgentCache-* are
// allowed too (the API's own families). The CORS-safelisted ones (Accept,
// Accept-Language, Content-Language) need no mention.
var corsAllowHeaders = []string{
	"Authorization", "Content-Type", "Range", "If-Range",
	protocol.HeaderAPISecret, protocol.HeaderUploadToken, protocol.HeaderChunkSHA256,
	protocol.HeaderContentSHA256, protocol.HeaderFilename, protocol.HeaderCacheKey, protocol.HeaderTTL,
}

// corsAllowPrefixes are header families allowed whatever their suffix.
var corsAllowPrefixes = []string{"x-jetty-", "x-agentcache-"}

// corsExposeHeaders are the answer headers a browser client may read
// beyond the safelisted ones.
var corsExposeHeaders = []string{
	protocol.HeaderRetryAfter, "X-RateLimit-Limit", "X-RateLimit-Remaining",
	"Content-Disposition", "Content-Range", "Content-Length", "Accept-Ranges", "ETag",
	protocol.HeaderContentSHA256,
}

// ParseCORSOrigins reads JETTY_CORS_ORIGINS: exact origins separated by
// commas, each scheme://host[:port] with the scheme http or https. It
// answers them in the form browsers send (lower case, default port left
// out, a trailing "/" dropped). Wildcards, paths, queries, user info and
// "null" are refused: the answers carry credentials, which CORS forbids
// with "*", and an allow-list must name whom it trusts.
func ParseCORSOrigins(v string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, raw := range strings.Split(v, ",") {
		o := strings.TrimSpace(raw)
		if o == "" {
			continue
		}
		norm, err := parseOrigin(o)
		if err != nil {
			return nil, fmt.Errorf("JETTY_CORS_ORIGINS: %q: %w", o, err)
		}
		if !seen[norm] {
			seen[norm] = true
			out = append(out, norm)
		}
	}
	return out, nil
}

func parseOrigin(o string) (string, error) {
	const want = "give exact origins such as https://agentcache.ai or http://localhost:5173, separated by commas"
	if strings.Contains(o, "*") {
		return "", fmt.Errorf("wildcards are not supported (answers carry credentials, which CORS forbids with \"*\"): %s", want)
	}
	if strings.EqualFold(o, "null") {
		return "", fmt.Errorf("the \"null\" origin (files, sandboxed frames) cannot be trusted: %s", want)
	}
	u, err := url.Parse(o)
	if err != nil {
		return "", fmt.Errorf("not a URL: %s", want)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", fmt.Errorf("the scheme must be http or https: %s", want)
	}
	if u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("no host: %s", want)
	}
	if u.User != nil {
		return "", fmt.Errorf("an origin has no user name or password: %s", want)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.HasSuffix(o, "#") {
		return "", fmt.Errorf("an origin has no path, query or fragment: %s", want)
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if host == "" {
		return "", fmt.Errorf("no host: %s", want)
	}
	if port != "" {
		if n, ok := validPort(port); !ok {
			return "", fmt.Errorf("port %q is not a port number: %s", port, want)
		} else if (scheme == "http" && n == 80) || (scheme == "https" && n == 443) {
			port = ""
		}
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host, nil
}

func validPort(p string) (int, bool) {
	n := 0
	for _, c := range p {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
		if n > 65535 {
			return 0, false
		}
	}
	return n, n > 0
}

// corsRoute reports whether CORS applies to a (cleaned) path.
func corsRoute(p string) bool {
	switch {
	case p == protocol.PathWhoami, p == protocol.PathQuota:
		return true
	case strings.HasPrefix(p, "/api/storage/"):
		return true
	case p == protocol.PathEdgeHeartbeat, strings.HasPrefix(p, protocol.PathEdgeNode), strings.HasPrefix(p, protocol.PathEdgeSession):
		return false // the relays' own calls
	case strings.HasPrefix(p, "/api/jetty/"):
		return true
	}
	return false
}

// cors wraps next (the routes of mux) with the CORS answers for the
// origins of the allow-list.
func (s *Server) cors(origins []string, mux *http.ServeMux, next http.Handler) http.Handler {
	allowed := make(map[string]bool, len(origins))
	for _, o := range origins {
		allowed[o] = true
	}
	expose := strings.Join(corsExposeHeaders, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p != "" {
			p = path.Clean(p)
		}
		if !corsRoute(p) {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		// The answer differs by Origin whether or not this one is listed:
		// caches must keep them apart.
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		ok := origin != "" && allowed[origin]
		if r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			// observe labels the request with its route pattern; the mux,
			// which sets it, is not reached.
			r.Pattern = "OPTIONS (CORS preflight)"
			if !ok {
				s.writeError(w, r, server.Errorf(server.ECORSOrigin, "origin %q may not call this API from a browser: the server's JETTY_CORS_ORIGINS does not list it", origin))
				return
			}
			methods := allowedMethods(mux, r)
			if len(methods) == 0 {
				r.Pattern = ""
				next.ServeHTTP(w, r) // no such route: the mux's 404
				return
			}
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Access-Control-Allow-Methods", strings.Join(methods, ", "))
			h.Set("Access-Control-Allow-Headers", strings.Join(corsHeaders(r.Header.Values("Access-Control-Request-Headers")), ", "))
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if ok {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Access-Control-Expose-Headers", expose)
		}
		next.ServeHTTP(w, r)
	})
}

// corsHeaders is the Access-Control-Allow-Headers list: the API's headers
// and those of the requested ones in its header families.
func corsHeaders(requested []string) []string {
	out := append([]string(nil), corsAllowHeaders...)
	for _, line := range requested {
		for _, name := range strings.Split(line, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			for _, pre := range corsAllowPrefixes {
				if strings.HasPrefix(name, pre) && len(name) > len(pre) && len(name) <= 64 && validToken(name) {
					out = append(out, name)
					break
				}
			}
		}
	}
	return out
}

// validToken reports an HTTP header name made of letters, digits and "-".
func validToken(s string) bool {
	for _, c := range s {
		if !(c == '-' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
