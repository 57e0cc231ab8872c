package engine

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// TestDownloadStreamInOrder: ranges fetched in parallel (the first one
// answered last, after a cut attempt) are written in order, verified.
func TestDownloadStreamInOrder(t *testing.T) {
	content := genBytes(91, 5*StreamRangeSize+777)
	s := newAssetServer(t, content)
	release := make(chan struct{})
	s.hook = func(w http.ResponseWriter, r *http.Request, off int64, attempt int) bool {
		switch {
		case off == 0 && attempt == 1:
			<-release // answered once the others were asked
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		case off == 4*StreamRangeSize:
			close(release)
		}
		return false
	}
	var out bytes.Buffer
	res, err := DownloadStream(context.Background(), s.client(), s.asset, &out, DownloadOptions{Workers: 8})
	if err != nil || !res.Verified || res.Fetched != int64(len(content)) || !bytes.Equal(out.Bytes(), content) {
		t.Fatalf("res %+v err %v; output equal: %v (%d bytes)", res, err, bytes.Equal(out.Bytes(), content), out.Len())
	}
}

// TestDownloadStreamMismatchHoldsBackTheEnd: a stream whose bytes do
// not hash to the stored SHA-256 fails, and its last range is never
// written: the output is short.
func TestDownloadStreamMismatchHoldsBackTheEnd(t *testing.T) {
	content := genBytes(92, 2*StreamRangeSize+10)
	s := newAssetServer(t, content)
	a := s.asset
	a.Hash = strings.Repeat("ab", 32)
	var out bytes.Buffer
	_, err := DownloadStream(context.Background(), s.client(), a, &out, DownloadOptions{Workers: 3})
	var fe *DownloadFileError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "must not be used") {
		t.Fatalf("err = %v", err)
	}
	if out.Len() != 2*StreamRangeSize || !bytes.Equal(out.Bytes(), content[:out.Len()]) {
		t.Fatalf("wrote %d bytes, want the first %d only", out.Len(), 2*StreamRangeSize)
	}
}

func TestDownloadStreamEmpty(t *testing.T) {
	s := newAssetServer(t, nil)
	var out bytes.Buffer
	if res, err := DownloadStream(context.Background(), s.client(), s.asset, &out, DownloadOptions{}); err != nil || !res.Verified || out.Len() != 0 {
		t.Fatalf("res %+v err %v out %d", res, err, out.Len())
	}
}
