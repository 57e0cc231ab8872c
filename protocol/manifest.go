package protocol

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Manifest limits of protocol v1 (docs/protocol.md).
const (
	// ManifestVersion is the manifest format this package writes and reads.
	ManifestVersion = 1
	// MinChunkSize is S3's minimum part size: no chunk but the last may be
	// smaller.
	MinChunkSize int64 = 5 << 20
	// DefaultChunkSize is the smallest chunk size ChooseChunkSize picks.
	DefaultChunkSize int64 = 8 << 20
	// MaxChunkSize is the largest chunk the protocol allows.
	MaxChunkSize int64 = 512 << 20
	// MaxChunks is the most chunks a manifest may have (S3's part limit).
	MaxChunks = 10000
	// MaxSize is the largest file a manifest can describe.
	MaxSize = MaxChunkSize * MaxChunks
	// MaxChunkIndex is the largest chunk index: chunk PUTs name 0..9,999.
	MaxChunkIndex = MaxChunks - 1
	// MaxManifestBody bounds a session-open or completion body: 10,000
	// chunks of about 120 bytes of JSON each, with room to spare.
	MaxManifestBody = 4 << 20
)

// Manifest describes a file cut into fixed-size chunks: the SHA-256 of
// every chunk and of the whole file. It is what a session is opened with.
type Manifest struct {
	Version   int     `json:"version"`
	Name      string  `json:"name"`
	Size      int64   `json:"size"`
	ChunkSize int64   `json:"chunk_size"`
	SHA256    string  `json:"sha256"`
	Chunks    []Chunk `json:"chunks"`
}

// Chunk is one piece of a file: bytes [Offset, Offset+Size).
type Chunk struct {
	Index  int    `json:"index"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ManifestError is what Validate returns: the manifest breaks a rule of
// the protocol.
type ManifestError struct{ Reason string }

func (e *ManifestError) Error() string { return "invalid manifest: " + e.Reason }

func badManifest(format string, args ...any) error {
	return &ManifestError{Reason: fmt.Sprintf(format, args...)}
}

// ChooseChunkSize picks the chunk size for a file of size bytes: 8 MiB,
// doubled until the file fits in MaxChunks chunks, at most MaxChunkSize.
// A file larger than MaxSize gets MaxChunkSize (and the client refuses to plan it).
func ChooseChunkSize(size int64) int64 {
	cs := DefaultChunkSize
	for cs < MaxChunkSize && NumChunks(size, cs) > MaxChunks {
		cs *= 2
	}
	return cs
}

// NumChunks is how many chunks of chunkSize a file of size bytes has: at
// least one (an empty file is one empty chunk).
func NumChunks(size, chunkSize int64) int64 {
	if size <= 0 {
		return 1
	}
	return (size + chunkSize - 1) / chunkSize
}

// CheckChunkSize reports whether chunkSize can cut a file of size bytes.
func CheckChunkSize(size, chunkSize int64) error {
	switch {
	case size < 0:
		return fmt.Errorf("negative size %d", size)
	case chunkSize < MinChunkSize || chunkSize > MaxChunkSize:
		return fmt.Errorf("chunk size %d is outside %d..%d bytes (5 MiB..512 MiB)", chunkSize, MinChunkSize, MaxChunkSize)
	case NumChunks(size, chunkSize) > MaxChunks:
		return fmt.Errorf("a %d-byte file in chunks of %d bytes is %d chunks, more than %d: use a chunk size of at least %d",
			size, chunkSize, NumChunks(size, chunkSize), MaxChunks, ChooseChunkSize(size))
	}
	return nil
}

// NewManifest lays out the chunks of a file, without hashes.
func NewManifest(name string, size, chunkSize int64) *Manifest {
	n := int(NumChunks(size, chunkSize))
	m := &Manifest{Version: ManifestVersion, Name: name, Size: size, ChunkSize: chunkSize, Chunks: make([]Chunk, n)}
	for i := range m.Chunks {
		off := int64(i) * chunkSize
		m.Chunks[i] = Chunk{Index: i, Offset: off, Size: min(chunkSize, size-off)}
	}
	return m
}

// Validate checks m against the rules the server applies (protocol.md
// section 1): version 1; 1..10,000 chunks with indexes 0..n-1 in order and
// contiguous offsets from 0; every chunk but the last exactly chunk_size,
// the last 1..chunk_size bytes (0 only for an empty file); sizes adding up
// to size; every hash 64 lowercase hex characters; chunk_size 5..512 MiB.
// Like the server, it lets a one-chunk manifest declare any chunk_size
// from its size up to 512 MiB.
func (m *Manifest) Validate() error {
	if m == nil {
		return badManifest("no manifest")
	}
	if m.Version != ManifestVersion {
		return badManifest("version %d is not supported (protocol version %d is spoken here)", m.Version, ManifestVersion)
	}
	if !IsHex64(m.SHA256) {
		return badManifest("sha256 must be 64 lowercase hex characters")
	}
	n := len(m.Chunks)
	if n == 0 || n > MaxChunks {
		return badManifest("%d chunks; a manifest has 1 to %d", n, MaxChunks)
	}
	if m.Size < 0 {
		return badManifest("negative size %d", m.Size)
	}
	if n > 1 && (m.ChunkSize < MinChunkSize || m.ChunkSize > MaxChunkSize) {
		return badManifest("chunk_size %d is outside %d..%d bytes", m.ChunkSize, MinChunkSize, MaxChunkSize)
	}
	if n == 1 && (m.ChunkSize < m.Size || m.ChunkSize > MaxChunkSize) {
		return badManifest("chunk_size %d does not fit a one-chunk file of %d bytes", m.ChunkSize, m.Size)
	}
	var off int64
	for i, c := range m.Chunks {
		switch {
		case c.Index != i:
			return badManifest("chunk %d has index %d; indexes must run 0..%d in order", i, c.Index, n-1)
		case c.Offset != off:
			return badManifest("chunk %d starts at %d, want %d (chunks must be contiguous)", i, c.Offset, off)
		case !IsHex64(c.SHA256):
			return badManifest("chunk %d: sha256 must be 64 lowercase hex characters", i)
		case i < n-1 && c.Size != m.ChunkSize:
			return badManifest("chunk %d is %d bytes; every chunk but the last is chunk_size (%d)", i, c.Size, m.ChunkSize)
		case i == n-1 && (c.Size < 0 || c.Size > m.ChunkSize || (c.Size == 0 && n > 1)):
			return badManifest("last chunk is %d bytes; it must be 1..chunk_size (%d)", c.Size, m.ChunkSize)
		}
		off += c.Size
	}
	if off != m.Size {
		return badManifest("chunks add up to %d bytes, size says %d", off, m.Size)
	}
	// A one-chunk file is its chunk: both hashes are the same, and the
	// server, which verifies the chunk, thereby verifies the file.
	if n == 1 && m.SHA256 != m.Chunks[0].SHA256 {
		return badManifest("a one-chunk file's sha256 is its chunk's sha256; the manifest gives two different hashes")
	}
	if m.Size == 0 && m.SHA256 != EmptySHA256 {
		return badManifest("an empty file's sha256 is %s (the SHA-256 of nothing)", EmptySHA256)
	}
	return nil
}

// EmptySHA256 is the SHA-256 of nothing: the hash of an empty file.
const EmptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// ChunkListPrefix starts every chunk-list id (ChunkListID), so that no id
// of that kind equals a whole-file SHA-256 in hex.
const ChunkListPrefix = "m1-"

// ChunkListID is the identity of the content a manifest's chunks describe,
// computed from the chunks alone: "m1-" and the hex SHA-256 of, for each
// chunk in order, its size as 8 bytes big-endian followed by its raw
// 32-byte SHA-256. A server that verified every chunk (each one's size
// and SHA-256, as storage recorded them) has verified this id without
// reading the file again; it cannot say the same of the whole-file
// SHA-256 unless it read every byte in order (docs/protocol.md, "What the
// server verifies"). Hashes are taken as written; call it on a validated
// manifest.
func (m *Manifest) ChunkListID() string {
	h := sha256.New()
	var buf [8 + sha256.Size]byte
	for _, c := range m.Chunks {
		binary.BigEndian.PutUint64(buf[:8], uint64(c.Size))
		if d, err := hex.DecodeString(c.SHA256); err == nil && len(d) == sha256.Size {
			copy(buf[8:], d)
		} else {
			clear(buf[8:])
		}
		h.Write(buf[:])
	}
	return ChunkListPrefix + hex.EncodeToString(h.Sum(nil))
}

// IsHex64 reports whether s is 64 lowercase hex characters: how every
// SHA-256 travels in the protocol.
func IsHex64(s string) bool {
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

// manifestJSON has Manifest's fields without its methods.
type manifestJSON Manifest

// MarshalJSON encodes m compactly with a fixed field order; a manifest
// without chunks encodes "chunks": [] (never null). Equal manifests give
// equal bytes.
func (m Manifest) MarshalJSON() ([]byte, error) {
	if m.Chunks == nil {
		m.Chunks = []Chunk{}
	}
	return json.Marshal(manifestJSON(m))
}

// ParseManifest decodes a manifest. It refuses malformed JSON, trailing
// data and any version but ManifestVersion; call Validate for the rest.
func ParseManifest(b []byte) (*Manifest, error) {
	var m manifestJSON
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if m.Version != ManifestVersion {
		return nil, fmt.Errorf("manifest: version %d is not supported (this client reads version %d)", m.Version, ManifestVersion)
	}
	return (*Manifest)(&m), nil
}

// MissingBytes is the sum of the sizes of the chunks listed.
func (m *Manifest) MissingBytes(idx []int) int64 {
	var n int64
	for _, i := range idx {
		if i >= 0 && i < len(m.Chunks) {
			n += m.Chunks[i].Size
		}
	}
	return n
}
