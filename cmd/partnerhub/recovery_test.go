package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

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

// privateRedis returns the URL of a Redis this test may flush: a private
// redis-server on its own port when the suite runs against real Redis, or
// "" for the hub's in-process one.
func privateRedis(t testing.TB) string {
	t.Helper()
	if os.Getenv("REDIS_URL") == "" {
		return ""
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("REDIS_URL is set but redis-server is not installed: %v", err)
	}
	port := freePort(t)
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting private redis: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	rc := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer rc.Close()
	waitFor(t, 10*time.Second, "private redis", func() bool { return rc.Ping(context.Background()).Err() == nil })
	return url
}

// sendCheckouts posts n distinct signed checkouts concurrently and fails
// unless every one is acknowledged.
func sendCheckouts(t *testing.T, h *hubUnderTest, src, secret, prefix string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan string, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			id := fmt.Sprintf("%s_%03d", prefix, i)
			st, _ := h.postStripe(src, secret, checkoutCompleted("evt_"+id, "cs_"+id, "pi_"+id, "alice", 10000, 0))
			if st != 200 {
				errs <- fmt.Sprintf("%s: status %d", id, st)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// TestRedisFlushedMidRun: the database is the source of truth. Redis is
// flushed while work is queued; the sweeper finds every row that is due
// and every webhook ends as one conversion with its events delivered.
func TestRedisFlushedMidRun(t *testing.T) {
	env := testEnv(t)
	env["REDIS_URL"] = privateRedis(t)
	env["PARTNERHUB_SWEEP_INTERVAL"] = "1s"
	h := startHub(t, env, Options{})
	rcv := newReceiver(t)
	rcv.delay = 250 * time.Millisecond
	src, secret := setupProgram(t, h, rcv)

	const n = 40
	sendCheckouts(t, h, src, secret, "flush", n)
	waitFor(t, 30*time.Second, "the first deliveries", func() bool { return len(rcv.ofType("commission.created")) >= 3 })
	t.Logf("flushing Redis with %d of %d commission.created delivered", len(rcv.ofType("commission.created")), n)
	if err := h.app.Queue.Redis().FlushAll(context.Background()).Err(); err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
	waitFor(t, 60*time.Second, "every commission.created after the flush", func() bool {
		return len(rcv.ofType("commission.created")) == n
	})
	var convs conversionList
	h.api("GET", "/conversions?limit=200", nil, &convs)
	if len(convs.Data) != n {
		t.Fatalf("%d conversions, want %d", len(convs.Data), n)
	}
	if p := rcv.problems(); len(p) > 0 {
		t.Fatalf("receiver rejected deliveries: %v", p)
	}
}

// TestWorkerKilledMidRun kills the hub process (SIGKILL) while webhooks
// are being processed and delivered, restarts it, and checks that every
// acknowledged webhook ends as exactly one conversion and every outbound
// event is delivered; the provider's retries of the same events change
// nothing.
func TestWorkerKilledMidRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the partnerhub binary")
	}
	bin := filepath.Join(t.TempDir(), "partnerhub")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building partnerhub: %v\n%s", err, out)
	}
	env := testEnv(t)
	env["REDIS_URL"] = privateRedis(t)
	env["PARTNERHUB_SWEEP_INTERVAL"] = "1s"
	port := freePort(t)
	env["PARTNERHUB_ADDR"] = fmt.Sprintf("127.0.0.1:%d", port)
	if env["REDIS_URL"] == "" {
		// The in-process Redis dies with the process, which is the harsher
		// case: the restarted hub starts from an empty queue.
		delete(env, "REDIS_URL")
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "serve")
		cmd.Env = os.Environ()
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		cmd.Stdout, cmd.Stderr = testWriter{t}, testWriter{t}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "hub to listen", func() bool {
			c, err := net.Dial("tcp", env["PARTNERHUB_ADDR"])
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		return cmd
	}
	h := &hubUnderTest{t: t, base: "http://" + env["PARTNERHUB_ADDR"]}
	rcv := newReceiver(t)
	rcv.delay = 250 * time.Millisecond

	first := start()
	src, secret := setupProgram(t, h, rcv)
	const n = 40
	sendCheckouts(t, h, src, secret, "kill", n)
	waitFor(t, 30*time.Second, "the first deliveries", func() bool { return len(rcv.ofType("commission.created")) >= 3 })
	_ = first.Process.Signal(syscall.SIGKILL)
	_ = first.Wait()
	delivered := len(rcv.ofType("commission.created"))
	t.Logf("killed with %d of %d commission.created delivered", delivered, n)
	if delivered == n {
		t.Fatal("every event was delivered before the kill; the test did not interrupt anything")
	}

	second := start()
	t.Cleanup(func() { _ = second.Process.Signal(syscall.SIGTERM); _ = second.Wait() })
	// Tasks the killed worker held are either swept (in-process Redis died
	// with it) or recovered by asynq once their lease expires (one to two
	// minutes on a surviving Redis).
	waitFor(t, 180*time.Second, "every event delivered after the restart", func() bool {
		return len(rcv.ofType("commission.created")) == n && len(rcv.ofType("conversion.created")) == n
	})
	// The provider retries what it may not have seen acknowledged.
	sendCheckouts(t, h, src, secret, "kill", n)
	var convs conversionList
	h.api("GET", "/conversions?limit=200", nil, &convs)
	var coms commissionList
	h.api("GET", "/commissions?limit=200", nil, &coms)
	if len(convs.Data) != n || len(coms.Data) != n {
		t.Fatalf("%d conversions and %d commissions, want %d each", len(convs.Data), len(coms.Data), n)
	}
	if p := rcv.problems(); len(p) > 0 {
		t.Fatalf("receiver rejected deliveries: %v", p)
	}
}
