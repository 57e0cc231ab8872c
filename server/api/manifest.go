package api

import (
	"encoding/json"
	"fmt"

	"github.com/jettythunder/jetty/server"
)

// Manifest limits of protocol v1 (docs/protocol.md).
const (
	manifestVersion = 1
	minChunkSize    = 5 << 20
	maxChunkSize    = 512 << 20
	maxChunks       = 10000
	// maxManifestBody bounds a session-open body: 10,000 chunks of about
	// 120 bytes of JSON each, with room to spare.
	maxManifestBody = 4 << 20
)

// wireChunk and wireManifest are the manifest as it travels.
type wireChunk struct {
	Index  int    `json:"index"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

type wireManifest struct {
	Version   int         `json:"version"`
	Name      string      `json:"name"`
	Size      int64       `json:"size"`
	ChunkSize int64       `json:"chunk_size"`
	SHA256    string      `json:"sha256"`
	Chunks    []wireChunk `json:"chunks"`
}

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

// validate checks m against the protocol's rules. It is written
// independently of the client's planner, so each side checks the other.
func (m *wireManifest) validate() error {
	if m.Version != manifestVersion {
		return badManifest("version %d is not supported (this server speaks version %d)", m.Version, manifestVersion)
	}
	if !isHex64(m.SHA256) {
		return badManifest("sha256 must be 64 lowercase hex characters")
	}
	n := len(m.Chunks)
	if n == 0 || n > maxChunks {
		return badManifest("%d chunks; a manifest has 1 to %d", n, maxChunks)
	}
	if m.Size < 0 {
		return badManifest("negative size")
	}
	if n > 1 && (m.ChunkSize < minChunkSize || m.ChunkSize > maxChunkSize) {
		return badManifest("chunk_size %d is outside %d..%d bytes", m.ChunkSize, minChunkSize, maxChunkSize)
	}
	if n == 1 && (m.ChunkSize < m.Size || m.ChunkSize > maxChunkSize) {
		return badManifest("chunk_size %d does not fit a one-chunk file of %d bytes", m.ChunkSize, m.Size)
	}
	var off int64
	for i, c := range m.Chunks {
		switch {
		case c.Index != i:
			return badManifest("chunk %d has index %d; indexes must run 0..%d in order", i, c.Index, n-1)
		case c.Offset != off:
			return badManifest("chunk %d starts at %d, want %d (chunks must be contiguous)", i, c.Offset, off)
		case !isHex64(c.SHA256):
			return badManifest("chunk %d: sha256 must be 64 lowercase hex characters", i)
		case i < n-1 && c.Size != m.ChunkSize:
			return badManifest("chunk %d is %d bytes; every chunk but the last is chunk_size (%d)", i, c.Size, m.ChunkSize)
		case i == n-1 && (c.Size < 0 || c.Size > m.ChunkSize || (c.Size == 0 && n > 1)):
			return badManifest("last chunk is %d bytes; it must be 1..chunk_size", c.Size)
		}
		off += c.Size
	}
	if off != m.Size {
		return badManifest("chunks add up to %d bytes, size says %d", off, m.Size)
	}
	return nil
}

func parseStoredManifest(b []byte) (*wireManifest, error) {
	var m wireManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("stored manifest: %w", err)
	}
	return &m, nil
}
