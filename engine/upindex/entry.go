package upindex

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/jettythunder/jetty/protocol"
)

// The entry file, format version 1, all integers big-endian:
//
//	magic "jtix", version byte 1
//	server, account, path: each a uvarint length and the bytes
//	size, mtime, ctime (int64), inode, dev (uint64)
//	recorded (int64, Unix ns), chunk size (int64)
//	whole-file SHA-256 (32 bytes)
//	chunk count (uvarint), then each chunk's SHA-256 (32 bytes)
//	CRC-32C of everything before it (4 bytes)
//
// Anything else, a file cut short or with bytes after the checksum
// included, does not decode.
const (
	magic         = "jtix"
	formatVersion = 1
	// maxField bounds each Key field: longer than any path an OS allows.
	maxField = 1 << 16
	// maxFile bounds an entry file: three fields at most, MaxChunks
	// hashes and the fixed part.
	maxFile = 3*(binary.MaxVarintLen64+maxField) + 128 + binary.MaxVarintLen64 + protocol.MaxChunks*hashLen
	hashLen = 32
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errFormat is decode's answer to a file that is not a version-1 entry.
var errFormat = errors.New("not an upload index entry")

// check applies Put's rules to e (Recorded set).
func (e *Entry) check() error {
	if err := e.Key.check(); err != nil {
		return err
	}
	if _, err := e.manifest(""); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// manifest builds e's manifest and validates it.
func (e *Entry) manifest(name string) (*protocol.Manifest, error) {
	switch {
	case e.Size < 0:
		return nil, fmt.Errorf("negative size %d", e.Size)
	case e.ChunkSize <= 0 || e.ChunkSize > protocol.MaxChunkSize:
		return nil, fmt.Errorf("chunk size %d is outside 1..%d", e.ChunkSize, protocol.MaxChunkSize)
	case !protocol.IsHex64(e.SHA256):
		return nil, errors.New("the file's SHA-256 is not 64 lowercase hex characters")
	}
	if n := protocol.NumChunks(e.Size, e.ChunkSize); int64(len(e.Chunks)) != n {
		return nil, fmt.Errorf("%d chunk hashes for a %d-byte file in chunks of %d bytes, want %d", len(e.Chunks), e.Size, e.ChunkSize, n)
	}
	m := protocol.NewManifest(name, e.Size, e.ChunkSize)
	m.SHA256 = e.SHA256
	for i, h := range e.Chunks {
		if !protocol.IsHex64(h) {
			return nil, fmt.Errorf("chunk %d: the SHA-256 is not 64 lowercase hex characters", i)
		}
		m.Chunks[i].SHA256 = h
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// Manifest is the manifest of e's file, named name, validated
// (protocol.Manifest.Validate); nil when e does not make a valid one,
// which no entry Lookup returns does.
func (e *Entry) Manifest(name string) *protocol.Manifest {
	m, err := e.manifest(name)
	if err != nil {
		return nil
	}
	return m
}

// encode is e in format version 1 (e checked).
func encode(e *Entry) []byte {
	b := make([]byte, 0, 64+len(e.Server)+len(e.Account)+len(e.Path)+hashLen*(1+len(e.Chunks)))
	b = append(b, magic...)
	b = append(b, formatVersion)
	for _, s := range []string{e.Server, e.Account, e.Path} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, v := range []uint64{uint64(e.Size), uint64(e.MTime), uint64(e.CTime), e.Inode, e.Dev,
		uint64(e.Recorded.UnixNano()), uint64(e.ChunkSize)} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	b = appendHash(b, e.SHA256)
	b = binary.AppendUvarint(b, uint64(len(e.Chunks)))
	for _, h := range e.Chunks {
		b = appendHash(b, h)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func appendHash(b []byte, h string) []byte {
	b, err := hex.AppendDecode(b, []byte(h))
	if err != nil { // checked before: IsHex64
		panic(err)
	}
	return b
}

// decode parses an entry file and checks it as Put does.
func decode(b []byte) (*Entry, error) {
	if len(b) < len(magic)+1+4 || len(b) > maxFile {
		return nil, errFormat
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return nil, errFormat
	}
	r := bytes.NewReader(body)
	head := make([]byte, len(magic)+1)
	if _, err := r.Read(head); err != nil || string(head[:len(magic)]) != magic || head[len(magic)] != formatVersion {
		return nil, errFormat
	}
	var fields [3]string
	for i := range fields {
		n, err := binary.ReadUvarint(r)
		if err != nil || n > maxField || n > uint64(r.Len()) {
			return nil, errFormat
		}
		s := make([]byte, n)
		r.Read(s)
		fields[i] = string(s)
	}
	var nums [7]uint64
	if err := binary.Read(r, binary.BigEndian, &nums); err != nil {
		return nil, errFormat
	}
	e := &Entry{
		Key:       Key{Server: fields[0], Account: fields[1], Path: fields[2]},
		Stat:      Stat{Size: int64(nums[0]), MTime: int64(nums[1]), CTime: int64(nums[2]), Inode: nums[3], Dev: nums[4]},
		Recorded:  time.Unix(0, int64(nums[5])),
		ChunkSize: int64(nums[6]),
	}
	var ok bool
	if e.SHA256, ok = readHash(r); !ok {
		return nil, errFormat
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n > protocol.MaxChunks || n*hashLen != uint64(r.Len()) {
		return nil, errFormat
	}
	e.Chunks = make([]string, n)
	for i := range e.Chunks {
		e.Chunks[i], _ = readHash(r)
	}
	if e.check() != nil {
		return nil, errFormat
	}
	return e, nil
}

func readHash(r *bytes.Reader) (string, bool) {
	var h [hashLen]byte
	if n, _ := r.Read(h[:]); n != hashLen {
		return "", false
	}
	return hex.EncodeToString(h[:]), true
}
