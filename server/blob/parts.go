package blob

import (
	"bytes"
	"errors"
	"fmt"
)

// Multipart limits shared by every Store (S3's).
const (
	// MinPartSize is the smallest size of every part but the last.
	MinPartSize = 5 << 20
	// MaxParts is the highest part number.
	MaxParts = 10000
)

// CheckParts verifies the parts a caller wants to complete an upload with
// against the parts the backend stored: part numbers ascending without
// repeats, each stored with the same size, the same SHA-256 (when both
// sides have one) and the same ETag (when the caller gives one), and all
// but the last at least MinPartSize. A SHA-256 that differs wraps
// ErrChecksum.
func CheckParts(given, stored []Part) error {
	if len(given) == 0 {
		return errors.New("blob: no parts to complete")
	}
	byNum := make(map[int]Part, len(stored))
	for _, p := range stored {
		byNum[p.Number] = p
	}
	prev := 0
	for i, g := range given {
		if g.Number <= prev || g.Number > MaxParts {
			return fmt.Errorf("blob: part numbers must ascend without repeats within 1..%d (part %d after %d)", MaxParts, g.Number, prev)
		}
		prev = g.Number
		st, ok := byNum[g.Number]
		if !ok {
			return fmt.Errorf("blob: part %d was not uploaded", g.Number)
		}
		if g.Size != st.Size {
			return fmt.Errorf("blob: part %d is stored with %d bytes, not %d", g.Number, st.Size, g.Size)
		}
		if len(g.SHA256) > 0 && len(st.SHA256) > 0 && !bytes.Equal(g.SHA256, st.SHA256) {
			return fmt.Errorf("blob: part %d is stored with another SHA-256: %w", g.Number, ErrChecksum)
		}
		if g.ETag != "" && st.ETag != "" && g.ETag != st.ETag {
			return fmt.Errorf("blob: part %d is stored with ETag %s, not %s", g.Number, st.ETag, g.ETag)
		}
		if i < len(given)-1 && st.Size < MinPartSize {
			return fmt.Errorf("blob: part %d is %d bytes; every part but the last must be at least %d", g.Number, st.Size, MinPartSize)
		}
	}
	return nil
}
