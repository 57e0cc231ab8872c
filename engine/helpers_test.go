package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"io"

	"github.com/jettythunder/jetty/internal/testenv"
	"github.com/jettythunder/jetty/protocol"
)

// genBytes returns n deterministic pseudo-random bytes (ChaCha8, seed).
func genBytes(seed byte, n int64) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(testenv.NewRandReader(seed, n), b); err != nil {
		panic(err)
	}
	return b
}

// sequentialManifest is the obvious one-goroutine planner Plan must agree
// with.
func sequentialManifest(name string, data []byte, chunkSize int64) *protocol.Manifest {
	size := int64(len(data))
	m := &protocol.Manifest{Version: 1, Name: name, Size: size, ChunkSize: chunkSize}
	sum := sha256.Sum256(data)
	m.SHA256 = hex.EncodeToString(sum[:])
	for i, off := 0, int64(0); off < size || i == 0; i++ {
		n := min(chunkSize, size-off)
		cs := sha256.Sum256(data[off : off+n])
		m.Chunks = append(m.Chunks, protocol.Chunk{Index: i, Offset: off, Size: n, SHA256: hex.EncodeToString(cs[:])})
		off += n
	}
	return m
}
