package api

import (
	"github.com/jettythunder/jetty/engine"
	"github.com/jettythunder/jetty/server"
)

// The manifest is the engine's: one definition of the wire format and its
// rules (docs/protocol.md) for both sides. engine has no server code, so
// the server may import it.
type wireManifest = engine.Manifest

// Manifest limits of protocol v1.
const (
	minChunkSize = engine.MinChunkSize
	maxChunkSize = engine.MaxChunkSize
	maxChunks    = engine.MaxChunks
	// maxManifestBody bounds a session-open body: 10,000 chunks of about
	// 120 bytes of JSON each, with room to spare.
	maxManifestBody = 4 << 20
)

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func badManifest(format string, args ...any) error {
	return server.Errorf(server.EInvalidManifest, "invalid manifest: "+format, args...)
}

// validateManifest checks m against the protocol's rules.
func validateManifest(m *wireManifest) error {
	if err := m.Validate(); err != nil {
		return server.Errorf(server.EInvalidManifest, "%v", err)
	}
	return nil
}

// parseStoredManifest decodes a manifest the store kept.
func parseStoredManifest(b []byte) (*wireManifest, error) {
	return engine.ParseManifest(b)
}
