package edges

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/internal/safefile"
	"github.com/jettythunder/jetty/protocol"
)

// The memory: the best edge of the last selection for each server, kept
// in a small file (Selector.Memory), so that the next upload to that
// server starts on it at once (StartRoutes) while its own selection
// runs. It is a hint only: the selection's routes replace it when they
// come, and the breaker takes it out when it fails.

// DefaultMemoryFresh is how long a remembered edge is started on: a
// relay's load and a path's speed change, and an older figure is more
// likely to send the first chunks the wrong way than the origin is.
const DefaultMemoryFresh = 10 * time.Minute

// memoryMax bounds the file (and how much of it is read).
const (
	memoryMaxServers = 32
	memoryMaxBytes   = 64 << 10
)

// remembered is the best edge of one server's last selection.
type remembered struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"`
	ID     string    `json:"id"`
	URL    string    `json:"url,omitempty"` // a relay's base URL
	Label  string    `json:"label,omitempty"`
	Weight float64   `json:"weight"`
}

type memoryFile struct {
	Version int                    `json:"version"`
	Servers map[string]*remembered `json:"servers"`
}

const memoryVersion = 1

// DefaultMemoryPath is the memory file next to the engine's journals:
// $XDG_STATE_HOME/jetty/edges.json, else ~/.local/state/jetty/edges.json
// (%LocalAppData%\jetty\edges.json on Windows).
func DefaultMemoryPath() (string, error) { return MemoryPath(os.Getenv) }

// MemoryPath is DefaultMemoryPath in the environment getenv.
func MemoryPath(getenv func(string) string) (string, error) {
	if d := getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "jetty", "edges.json"), nil
	}
	if runtime.GOOS == "windows" {
		if d := getenv("LocalAppData"); d != "" {
			return filepath.Join(d, "jetty", "edges.json"), nil
		}
		return "", errors.New("edge memory: %LocalAppData% is not set (or set XDG_STATE_HOME)")
	}
	home := getenv("HOME")
	if home == "" || !filepath.IsAbs(home) {
		return "", errors.New("edge memory: $HOME is not set (or set XDG_STATE_HOME)")
	}
	return filepath.Join(home, ".local", "state", "jetty", "edges.json"), nil
}

// serverKey names the selector's server in the memory.
func (sel *Selector) serverKey() string { return strings.TrimRight(sel.Client.BaseURL, "/") }

func (sel *Selector) memoryFresh() time.Duration {
	if sel.MemoryFresh <= 0 {
		return DefaultMemoryFresh
	}
	return sel.MemoryFresh
}

// loadMemory reads the memory file; a missing, unsafe, oversized or
// unreadable one is empty.
func loadMemory(path string) memoryFile {
	empty := memoryFile{Version: memoryVersion, Servers: map[string]*remembered{}}
	f, err := safefile.Open(path, os.O_RDONLY)
	if err != nil {
		return empty
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, memoryMaxBytes+1))
	var m memoryFile
	if err != nil || len(b) > memoryMaxBytes || json.Unmarshal(b, &m) != nil || m.Version != memoryVersion || m.Servers == nil {
		return empty
	}
	return m
}

// remember records the best route of a selection for the selector's
// server (the origin: nothing to start on but the origin, the entry is
// dropped). Failures are ignored: the memory is a hint.
func (sel *Selector) remember(best engine.Route) {
	if sel.Memory == "" {
		return
	}
	m := loadMemory(sel.Memory)
	key := sel.serverKey()
	switch best.Kind {
	case engine.RouteRelay:
		base := best.ChunkURL
		if i := strings.Index(base, sessionsPath); i > 0 {
			base = base[:i]
		}
		m.Servers[key] = &remembered{At: time.Now().UTC(), Kind: best.Kind, ID: best.ID, URL: base, Label: best.Label, Weight: best.Weight}
	case engine.RouteDirect:
		m.Servers[key] = &remembered{At: time.Now().UTC(), Kind: best.Kind, ID: best.ID, Label: best.Label, Weight: best.Weight}
	default:
		if _, ok := m.Servers[key]; !ok {
			return
		}
		delete(m.Servers, key)
	}
	for len(m.Servers) > memoryMaxServers { // forget the oldest
		keys := make([]string, 0, len(m.Servers))
		for k := range m.Servers {
			keys = append(keys, k)
		}
		oldest := slices.MinFunc(keys, func(a, b string) int { return m.Servers[a].At.Compare(m.Servers[b].At) })
		delete(m.Servers, oldest)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(sel.Memory), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return
	}
	_ = safefile.WriteFile(sel.Memory, b, 0o600)
}

var _ engine.RouteStarter = (*Selector)(nil)

// StartRoutes is the best edge of the last selection for this server
// (Memory), when it is fresher than MemoryFresh, of a kind the selector
// may choose, and the session has enough chunks to be worth routes: that
// edge with the weight of an outscored origin's complement, and the
// origin with OriginFallbackShare. Nil otherwise: the upload starts on
// the origin alone. It reads one small file and never waits on the
// network.
func (sel *Selector) StartRoutes(s *protocol.Session) []engine.Route {
	if sel.Memory == "" || sel.Client == nil || s == nil || s.ChunkURL == "" || len(s.Missing) < sel.minChunks() {
		return nil
	}
	r := loadMemory(sel.Memory).Servers[sel.serverKey()]
	if r == nil {
		return nil
	}
	if age := time.Since(r.At); age < 0 || age >= sel.memoryFresh() {
		return nil
	}
	if len(sel.Kinds) > 0 && !slices.Contains(sel.Kinds, r.Kind) {
		return nil
	}
	var best engine.Route
	switch r.Kind {
	case engine.RouteRelay:
		if r.URL == "" || r.ID == "" {
			return nil
		}
		best = engine.Route{ID: r.ID, Kind: engine.RouteRelay, Label: r.Label, ChunkURL: relayChunkURL(r.URL, s)}
	case engine.RouteDirect:
		base := originBase(s)
		if base == "" {
			return nil
		}
		best = engine.Route{ID: protocol.KindDirect, Kind: engine.RouteDirect, Label: r.Label, PresignURL: presignURL(base, s)}
	default:
		return nil
	}
	best.Weight = 1 - OriginFallbackShare
	origin := engine.Route{ID: protocol.KindOrigin, Kind: engine.RouteOrigin, Label: hostOf(s.ChunkURL), ChunkURL: s.ChunkURL, Weight: OriginFallbackShare}
	return []engine.Route{best, origin}
}
