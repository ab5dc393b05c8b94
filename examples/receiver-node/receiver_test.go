// Package receivernode tests the Node.js receiver (index.mjs) from Go:
// go test runs it with node when its node_modules are installed.
package receivernode

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// requireNode returns node, or skips (fails with CI=true, where .ci/run
// installs the packages) when node or the receiver's packages are missing.
func requireNode(t *testing.T) string {
	t.Helper()
	unavailable := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the Node receiver cannot run with CI=true: %s", why)
		}
		t.Skipf("%s: run `npm ci` in examples/receiver-node to test the Node receiver; with CI=true this is a failure", why)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable("node not found")
	}
	if _, err := os.Stat(filepath.Join("node_modules", "standardwebhooks", "package.json")); err != nil {
		unavailable("examples/receiver-node/node_modules is missing")
	}
	return node
}

// startReceiver runs index.mjs on a free port of 127.0.0.1.
func startReceiver(t *testing.T, node string) (string, *syncBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	var out syncBuffer
	cmd := exec.Command(node, "index.mjs")
	cmd.Env = append(os.Environ(), "WEBHOOK_SECRET="+testSecret, "PORT="+port, "HOST=127.0.0.1")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "listening for partnerhub webhooks") {
		select {
		case <-exited:
			t.Fatalf("the receiver exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receiver did not start within 15s:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "http://127.0.0.1:" + port + "/webhooks", &out
}

func post(t *testing.T, url, secret, id string, ts time.Time, body, sent string) int {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := wh.Sign(id, ts, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(sent))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func envelope(id string) string {
	return `{"id":"` + id + `","type":"commission.created","api_version":"2026-11-01","created_at":"2026-11-24T08:00:00Z","program_id":"prg_default","data":{"net_minor":735}}`
}

// TestNodeReceiver: deliveries signed by the Go reference library are
// accepted and printed; tampered, foreign and stale ones are refused with
// 400; a replayed id is answered 200 and printed as a duplicate once.
func TestNodeReceiver(t *testing.T) {
	url, out := startReceiver(t, requireNode(t))
	now := time.Now()
	body := envelope("evt_1")
	if code := post(t, url, testSecret, "evt_1", now, body, body); code != http.StatusOK {
		t.Fatalf("signed delivery: %d, want 200\n%s", code, out.String())
	}
	refused := []struct {
		name, secret string
		ts           time.Time
		sent         string
	}{
		{"tampered body", testSecret, now, strings.Replace(envelope("evt_2"), "735", "99999", 1)},
		{"another secret", "whsec_" + strings.Repeat("QUJD", 8), now, envelope("evt_2")},
		{"stale timestamp", testSecret, now.Add(-time.Hour), envelope("evt_2")},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			if code := post(t, url, c.secret, "evt_2", c.ts, envelope("evt_2"), c.sent); code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", code)
			}
		})
	}
	if code := post(t, url, testSecret, "evt_1", now.Add(time.Second), body, body); code != http.StatusOK {
		t.Fatalf("replayed delivery: %d, want 200", code)
	}
	time.Sleep(100 * time.Millisecond) // let the last line reach the pipe
	logs := out.String()
	if n := strings.Count(logs, "webhook received: commission.created evt_1"); n != 1 {
		t.Errorf("delivery printed %d times, want once:\n%s", n, logs)
	}
	if n := strings.Count(logs, "duplicate webhook ignored: commission.created evt_1"); n != 1 {
		t.Errorf("duplicate printed %d times, want once:\n%s", n, logs)
	}
	if strings.Contains(logs, "evt_2") || strings.Contains(logs, testSecret) {
		t.Errorf("refused deliveries were handled, or the secret printed:\n%s", logs)
	}
}
