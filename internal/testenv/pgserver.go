package testenv

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// PGServer is a private PostgreSQL cluster that one test owns: its own data
// directory and loopback port, so the test may stop and start it (a real
// restart) without disturbing the machine's shared PostgreSQL. See
// PostgresServer.
type PGServer struct {
	bin  string // directory holding initdb and postgres
	dir  string // data directory (also the socket directory)
	port int
	out  *SyncBuffer // server output, for failure messages

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited <-chan struct{}
}

const pgDirPrefix = "jetty-pg-"

// PostgresBinDir finds the PostgreSQL server binaries: $JETTY_PG_BIN (a
// directory), else `pg_config --bindir`, else the newest
// /usr/lib/postgresql/*/bin, else the directory of initdb on PATH.
func PostgresBinDir() (string, error) {
	has := func(d string) bool {
		for _, b := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(d, b)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if d := os.Getenv("JETTY_PG_BIN"); d != "" {
		if !has(d) {
			return "", fmt.Errorf("JETTY_PG_BIN=%s holds no initdb and postgres", d)
		}
		return d, nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); has(d) {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL server binaries (initdb, postgres) in $JETTY_PG_BIN, pg_config --bindir, /usr/lib/postgresql/*/bin or PATH")
}

// PostgresServer initialises a fresh PostgreSQL cluster in a temporary
// directory (trust authentication, user postgres, fsync off: the data is
// thrown away) and starts it on a free port of 127.0.0.1. As root it runs
// as the postgres user (PostgreSQL refuses to run as root). It dies with
// the test binary (Pdeathsig on Linux) and is stopped and removed when the
// test ends. When it cannot be set up the test is skipped, or fails under
// JETTY_REQUIRE_SERVICES=1.
//
// Initialising a cluster takes a second or two; use it only for tests that
// must stop the database, and testenv.PostgresURL otherwise.
func PostgresServer(t testing.TB) *PGServer {
	t.Helper()
	bin, err := PostgresBinDir()
	if err != nil {
		Unavailable(t, "a private PostgreSQL", err)
	}
	sweepDirs(pgDirPrefix)
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", pgDirPrefix, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := pgOwn(dir); err != nil {
		Unavailable(t, "a private PostgreSQL", err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	p := &PGServer{bin: bin, dir: filepath.Join(dir, "data"), port: port, out: &SyncBuffer{}}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", p.dir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
	initdb.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	initdb.Dir = dir // the postgres user may not reach the test's directory
	if err := pgRunAs(initdb); err != nil {
		Unavailable(t, "a private PostgreSQL", err)
	}
	if out, err := initdb.CombinedOutput(); err != nil {
		Unavailable(t, "a private PostgreSQL", fmt.Errorf("initdb: %v: %s", err, out))
	}
	t.Cleanup(func() {
		p.stop(syscall.SIGQUIT)
	})
	p.Start(t)
	return p
}

// URL is the cluster's postgres database, for sqlstore or
// database/sql with pgx.
func (p *PGServer) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
}

// Addr is the host:port the cluster listens on.
func (p *PGServer) Addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

// Start starts the cluster (again, on the same port) and waits until it
// accepts connections (crash recovery included after a Stop(t, true)).
func (p *PGServer) Start(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		t.Fatalf("testenv: PostgreSQL on port %d is already running", p.port)
	}
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), "-D", p.dir,
		"-p", strconv.Itoa(p.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+p.dir,
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "shared_buffers=16MB",
		"-c", "max_connections=50",
		"-c", "logging_collector=off")
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = p.out, p.out
	setPdeathsig(cmd)
	if err := pgRunAs(cmd); err != nil {
		t.Fatal(err)
	}
	exited, err := startChild(cmd)
	if err != nil {
		t.Fatalf("testenv: start postgres: %v", err)
	}
	p.cmd, p.exited = cmd, exited

	db, err := sql.Open("pgx", p.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			p.cmd = nil
			t.Fatalf("testenv: postgres exited during start: %s", p.out.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: postgres did not accept connections within 60s (%v): %s", err, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the cluster and waits until it has exited: immediate is
// PostgreSQL's immediate shutdown (SIGQUIT: every process quits at once,
// as in a crash; the next Start recovers from the WAL), otherwise a fast
// shutdown (SIGINT: sessions are terminated, then a clean checkpoint).
// Either way every client connection is cut.
func (p *PGServer) Stop(t testing.TB, immediate bool) {
	t.Helper()
	sig := syscall.SIGINT
	if immediate {
		sig = syscall.SIGQUIT
	}
	if err := p.stop(sig); err != nil {
		t.Fatal(err)
	}
}

func (p *PGServer) stop(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("testenv: postgres did not stop within 30s of %v; killed: %s", sig, p.out.String())
	}
}

// Log is what the cluster printed so far.
func (p *PGServer) Log() string { return p.out.String() }

// sweepDirs removes temporary directories named prefix<pid>-... left by
// earlier test binaries whose process is gone.
func sweepDirs(prefix string) {
	ents, _ := os.ReadDir(os.TempDir())
	for _, e := range ents {
		name, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidStr, _, _ := strings.Cut(name, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		_ = os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
	}
}
