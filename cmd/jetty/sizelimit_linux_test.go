package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jettythunder/jetty/internal/testenv"
)

// accessWatch reports reads of a file (inotify IN_ACCESS: any read or
// pread of it, by any process, root's included).
type accessWatch struct{ fd int }

func watchAccess(t *testing.T, path string) *accessWatch {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		t.Skipf("inotify: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if _, err := syscall.InotifyAddWatch(fd, path, syscall.IN_ACCESS); err != nil {
		t.Fatalf("inotify watch %s: %v", path, err)
	}
	return &accessWatch{fd: fd}
}

// read reports whether the file was read since the last call.
func (w *accessWatch) read(t *testing.T) bool {
	t.Helper()
	buf := make([]byte, 4096)
	got := false
	for {
		n, err := syscall.Read(w.fd, buf)
		if errors.Is(err, syscall.EAGAIN) {
			return got
		}
		if err != nil {
			t.Fatalf("inotify read: %v", err)
		}
		got = got || n > 0
	}
}

// TestUploadRefusedBeforeReading: a file larger than the tier allows per
// file, or than the quota has left, is refused before a byte of it is
// read (not hashed in full before the server's 413), with advice that
// fits the limit hit, and exit code 4. The files are sparse: nothing
// large is written.
func TestUploadRefusedBeforeReading(t *testing.T) {
	srv := testServer(t)
	skey, ssecret := testenv.Provision(t, srv, cmdSecret, "usr_limit_starter", "starter")
	fkey, fsecret := testenv.Provision(t, srv, cmdSecret, "usr_limit_free", "free")
	starter := newCLI(t, "JETTY_SERVER="+srv, "JETTY_API_KEY="+skey, "JETTY_API_SECRET="+ssecret)
	free := newCLI(t, "JETTY_SERVER="+srv, "JETTY_API_KEY="+fkey, "JETTY_API_SECRET="+fsecret)

	sparse := func(name string, size int64) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, size); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name  string
		c     *cli
		size  int64
		flags []string
		want  []string
	}{
		{"per-file limit", starter, 60 << 20, nil, []string{
			"file is 60.0 MiB; tier starter allows at most 50.0 MiB per file: nothing was read or sent",
			"files over 50.0 MiB need tier pro or higher: upgrade, or split the file; `jetty quota` shows your tier"}},
		{"per-file limit, hash first", starter, 60 << 20, []string{"--hash-first"}, []string{"tier starter allows at most 50.0 MiB per file"}},
		{"quota left", free, 5 << 20, nil, []string{
			"file is 5.0 MiB but only 0 B of your 0 B storage quota is free: nothing was read or sent",
			"delete files (`jetty ls`, `jetty rm`) or upgrade to tier starter"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := sparse("big.bin", tc.size)
			w := watchAccess(t, file)
			r := tc.c.run("", append([]string{"upload", file}, tc.flags...)...)
			if r.code != ExitQuota {
				t.Fatalf("exit %d, want %d\n%s", r.code, ExitQuota, r.err)
			}
			for _, s := range tc.want {
				if !strings.Contains(r.err, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.err)
				}
			}
			if w.read(t) {
				t.Errorf("the file was read before it was refused:\n%s", r.err)
			}
			// The watch sees reads (so the check above means something).
			f, _ := os.Open(file)
			f.Read(make([]byte, 1))
			f.Close()
			if !w.read(t) {
				t.Fatal("inotify saw no read of the file")
			}
		})
	}
}
