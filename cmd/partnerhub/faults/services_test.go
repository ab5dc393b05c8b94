//go:build faults

package faults

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"
)

// require fails the test when a program it needs is missing under CI=true,
// and skips it otherwise.
func require(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required by the fault suite: %v", what, err)
	}
	t.Skipf("%s is not available, skipping: %v", what, err)
}

// freePort returns a TCP port on 127.0.0.1 that is free right now.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond every 100 ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// redisServer is a private redis-server child process without persistence,
// which a test may flush, kill and restart.
type redisServer struct {
	t    testing.TB
	bin  string
	dir  string
	Port int
	cmd  *exec.Cmd
}

// startRedis starts a private redis-server on a free port until the test
// ends.
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	require(t, "redis-server", err)
	r := &redisServer{t: t, bin: bin, dir: t.TempDir(), Port: freePort(t)}
	r.Start()
	t.Cleanup(r.Kill)
	return r
}

// URL is the REDIS_URL of the server.
func (r *redisServer) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.Port) }

// Client returns a client of the server, closed when the test ends.
func (r *redisServer) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.Port)})
	r.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Start starts the server on its port and waits until it answers.
func (r *redisServer) Start() {
	r.t.Helper()
	r.cmd = exec.Command(r.bin, "--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--logfile", filepath.Join(r.dir, "redis.log"))
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("starting redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.Port)})
	defer c.Close()
	waitFor(r.t, 15*time.Second, "private redis-server", func() bool { return c.Ping(context.Background()).Err() == nil })
}

// Kill stops the server with SIGKILL; its data is gone.
func (r *redisServer) Kill() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// postgresServer is a private PostgreSQL cluster run as the postgres user,
// which a test may stop and start.
type postgresServer struct {
	t    testing.TB
	bin  string // directory of initdb, pg_ctl
	dir  string
	Port int
	db   *sql.DB
}

// postgresBin finds the newest /usr/lib/postgresql/<version>/bin with
// initdb and pg_ctl.
func postgresBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return va - vb
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_, e1 := os.Stat(filepath.Join(dirs[i], "initdb"))
		_, e2 := os.Stat(filepath.Join(dirs[i], "pg_ctl"))
		if e1 == nil && e2 == nil {
			return dirs[i], nil
		}
	}
	return "", fmt.Errorf("no initdb and pg_ctl under /usr/lib/postgresql/*/bin")
}

// startPostgres initializes a cluster in a directory owned by the postgres
// user and starts it on a free port until the test ends.
func startPostgres(t testing.TB) *postgresServer {
	t.Helper()
	bin, err := postgresBin()
	require(t, "PostgreSQL server binaries", err)
	_, err = exec.LookPath("runuser")
	require(t, "runuser", err)
	u, err := user.Lookup("postgres")
	require(t, "the postgres user", err)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// Under /tmp rather than t.TempDir: the postgres user must be able to
	// reach the directory.
	dir, err := os.MkdirTemp("", "partnerhub-faults-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatalf("chown %s: %v", dir, err)
	}
	p := &postgresServer{t: t, bin: bin, dir: dir, Port: freePort(t)}
	p.run(60*time.Second, "initdb", "-D", p.data(), "-A", "trust", "-U", "postgres", "--no-sync", "--no-locale", "-E", "UTF8")
	p.Start()
	t.Cleanup(func() {
		if p.db != nil {
			_ = p.db.Close()
		}
		p.Stop("immediate")
	})
	return p
}

func (p *postgresServer) data() string { return filepath.Join(p.dir, "data") }

// run runs a PostgreSQL program as the postgres user.
func (p *postgresServer) run(timeout time.Duration, prog string, args ...string) error {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	argv := append([]string{"-u", "postgres", "--", filepath.Join(p.bin, prog)}, args...)
	out, err := exec.CommandContext(ctx, "runuser", argv...).CombinedOutput()
	if err != nil && prog == "initdb" {
		p.t.Fatalf("%s: %v\n%s", prog, err, out)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", prog, strings.Join(args, " "), err, out)
	}
	return nil
}

// URL is the DATABASE_URL of the cluster's postgres database.
func (p *postgresServer) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.Port)
}

// Start starts the server and waits until it accepts connections. fsync
// is off: the tests stop PostgreSQL, never the machine, so committed rows
// survive in the page cache.
func (p *postgresServer) Start() {
	p.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off", p.Port, p.dir)
	if err := p.run(60*time.Second, "pg_ctl", "-D", p.data(), "-o", opts, "-l", filepath.Join(p.dir, "server.log"), "-w", "start"); err != nil {
		p.t.Fatalf("starting PostgreSQL: %v", err)
	}
}

// Stop stops the server with pg_ctl stop -m mode (fast or immediate).
func (p *postgresServer) Stop(mode string) {
	p.t.Helper()
	if err := p.run(60*time.Second, "pg_ctl", "-D", p.data(), "-m", mode, "-w", "stop"); err != nil {
		p.t.Logf("stopping PostgreSQL: %v", err)
	}
}

// DB returns a connection pool to the cluster, for the test's checks.
func (p *postgresServer) DB() *sql.DB {
	p.t.Helper()
	if p.db == nil {
		db, err := sql.Open("pgx", p.URL())
		if err != nil {
			p.t.Fatal(err)
		}
		p.db = db
	}
	return p.db
}
