//go:build faults

package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	adminKey  = "faults-admin-key-0123456789abcdef"
	secretKey = "faults-secret-key-0123456789abcdef0123456789"
)

// hubProcess is one partnerhub serve subprocess on a fixed port.
type hubProcess struct {
	t    testing.TB
	name string
	env  []string
	Base string // http://127.0.0.1:port
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// newHub prepares (without starting) a hub against databaseURL and
// redisURL. Every hub of a test shares the secret key, so that secrets one
// seals the others read.
func newHub(t testing.TB, name, databaseURL, redisURL string, extra ...string) *hubProcess {
	t.Helper()
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	h := &hubProcess{t: t, name: name, Base: "http://" + addr, log: filepath.Join(dir, "hub.log")}
	h.env = append(os.Environ(),
		"PARTNERHUB_ADDR="+addr,
		"PARTNERHUB_DATA_DIR="+dir,
		"PARTNERHUB_ADMIN_KEY="+adminKey,
		"PARTNERHUB_SECRET_KEY="+secretKey,
		"PARTNERHUB_OUTBOUND_ALLOW_NETS=127.0.0.0/8",
		"PARTNERHUB_PUBLIC_URL=https://hub.example.com",
		"PARTNERHUB_LOG_LEVEL=warn",
		"DATABASE_URL="+databaseURL,
		"REDIS_URL="+redisURL,
	)
	h.env = append(h.env, extra...)
	t.Cleanup(func() {
		h.Stop()
		if t.Failed() {
			h.dumpLog(40)
		}
	})
	return h
}

// Start runs the hub and waits until /healthz answers.
func (h *hubProcess) Start() {
	h.t.Helper()
	f, err := os.OpenFile(h.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	h.cmd = exec.Command(binary, "serve")
	h.cmd.Env = h.env
	h.cmd.Stdout, h.cmd.Stderr = f, f
	if err := h.cmd.Start(); err != nil {
		h.t.Fatalf("starting %s: %v", h.name, err)
	}
	h.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(h.cmd, h.done)
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(h.Base + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-h.done:
			h.dumpLog(40)
			h.t.Fatalf("%s exited while starting", h.name)
		default:
		}
		if time.Now().After(deadline) {
			h.dumpLog(40)
			h.t.Fatalf("%s did not answer /healthz within 30s", h.name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Kill stops the hub with SIGKILL: no graceful shutdown, running tasks
// are abandoned.
func (h *hubProcess) Kill() {
	if h.cmd == nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.done
	h.cmd = nil
}

// Stop stops the hub with SIGTERM, then SIGKILL after 20 s.
func (h *hubProcess) Stop() {
	if h.cmd == nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(20 * time.Second):
		_ = h.cmd.Process.Signal(syscall.SIGKILL)
		<-h.done
	}
	h.cmd = nil
}

func (h *hubProcess) dumpLog(n int) {
	f, err := os.Open(h.log)
	if err != nil {
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	h.t.Logf("last lines of %s's log:\n%s", h.name, strings.Join(lines, "\n"))
}

// api calls the JSON API as the admin; it fails the test unless the
// status is want.
func (h *hubProcess) api(method, path string, in any, want int) map[string]any {
	h.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, h.Base+"/api/v1"+path, body)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		h.t.Fatalf("%s %s: status %d, want %d: %s", method, path, res.StatusCode, want, b)
	}
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// metric returns the value of one series of the hub's /metrics, as
// written there (name and labels), or 0 when it is absent.
func (h *hubProcess) metric(series string) float64 {
	h.t.Helper()
	res, err := http.Get(h.Base + "/metrics")
	if err != nil {
		h.t.Fatalf("reading %s's /metrics: %v", h.name, err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				h.t.Fatalf("%s's %s: %v", h.name, series, err)
			}
			return f
		}
	}
	return 0
}

// program is what setupProgram created.
type program struct {
	SourceID, Secret string
}

// setupProgram creates the partner "alice", a 15 % default commission
// rate and a Stripe source.
func setupProgram(t testing.TB, h *hubProcess) program {
	t.Helper()
	h.api("POST", "/partners", map[string]any{"name": "Alice Example", "code": "alice"}, http.StatusCreated)
	h.api("PATCH", "/program", map[string]any{"default_commission_bps": 1500}, http.StatusOK)
	secret := "whsec_faults_0123456789"
	src := h.api("POST", "/sources", map[string]any{"provider": "stripe", "name": "Stripe live", "secret": secret}, http.StatusCreated)
	return program{SourceID: src["id"].(string), Secret: secret}
}

// addEndpoint creates an endpoint on url with extra settings and returns
// its id and signing secret.
func addEndpoint(t testing.TB, h *hubProcess, url string, settings map[string]any) (id, secret string) {
	t.Helper()
	in := map[string]any{"url": url, "description": "fault suite receiver"}
	for k, v := range settings {
		in[k] = v
	}
	ep := h.api("POST", "/endpoints", in, http.StatusCreated)
	return ep["id"].(string), ep["secret"].(string)
}
