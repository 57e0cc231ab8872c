package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"testing"
)

// RandReader yields n deterministic pseudo-random bytes for seed without
// holding them in memory, so tests can stream gigabytes.
type RandReader struct {
	rng *rand.ChaCha8
	n   int64
}

// NewRandReader returns a RandReader of n bytes.
func NewRandReader(seed byte, n int64) *RandReader {
	var s [32]byte
	s[0] = seed
	return &RandReader{rng: rand.NewChaCha8(s), n: n}
}

// Read implements io.Reader.
func (g *RandReader) Read(p []byte) (int, error) {
	if g.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.n {
		p = p[:g.n]
	}
	g.rng.Read(p)
	g.n -= int64(len(p))
	return len(p), nil
}

// RandHash is the hex SHA-256 of NewRandReader(seed, n)'s bytes.
func RandHash(seed byte, n int64) string {
	h := sha256.New()
	io.Copy(h, NewRandReader(seed, n))
	return hex.EncodeToString(h.Sum(nil))
}

// FillBlock fills b with the deterministic pseudo-random block number i.
func FillBlock(b []byte, i uint64) {
	var s [32]byte
	for k := 0; k < 8; k++ {
		s[k] = byte(i >> (8 * k))
	}
	rand.NewChaCha8(s).Read(b)
}

// WriteRandFile writes NewRandReader(seed, n)'s bytes to path and returns
// their hex SHA-256.
func WriteRandFile(t testing.TB, path string, seed byte, n int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), NewRandReader(seed, n)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
