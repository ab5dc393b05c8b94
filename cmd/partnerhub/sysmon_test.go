package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSysmonEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		environ []string
		want    []string // nil: left as it is
	}{
		{"no GODEBUG", []string{"HOME=/root", "PATH=/bin"},
			[]string{"HOME=/root", "PATH=/bin", "GODEBUG=" + quietSysmon}},
		{"empty GODEBUG", []string{"GODEBUG=", "PATH=/bin"},
			[]string{"PATH=/bin", "GODEBUG=" + quietSysmon}},
		{"other settings kept", []string{"GODEBUG=http2client=0,madvdontneed=1", "GODEBUGX=1"},
			[]string{"GODEBUGX=1", "GODEBUG=http2client=0,madvdontneed=1," + quietSysmon}},
		{"the operator's schedtrace=0", []string{"GODEBUG=schedtrace=0"}, nil},
		{"the operator's schedtrace among others", []string{"PATH=/bin", "GODEBUG=gctrace=1, schedtrace=1000"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := sysmonEnv(slices.Clone(tc.environ))
			if tc.want == nil {
				if changed || !slices.Equal(got, tc.environ) {
					t.Fatalf("sysmonEnv(%q) = %q, %v; want it unchanged", tc.environ, got, changed)
				}
				return
			}
			if !changed || !slices.Equal(got, tc.want) {
				t.Fatalf("sysmonEnv(%q) = %q, %v; want %q, true", tc.environ, got, changed, tc.want)
			}
		})
	}
}

// TestServeQuietSysmon runs the built binary's serve command and reads
// the environment the running process has: serve restarts itself, in
// the same process, with quietSysmon in GODEBUG, and leaves an
// operator's own schedtrace setting alone.
func TestServeQuietSysmon(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads the process's environment from /proc")
	}
	bin := filepath.Join(t.TempDir(), "partnerhub")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building partnerhub: %v\n%s", err, out)
	}
	serve := func(t *testing.T, godebug string) []string {
		env := testEnv(t)
		delete(env, "REDIS_URL") // the in-process queue: nothing shared
		env["PARTNERHUB_ADDR"] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		cmd := exec.Command(bin, "serve")
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "GODEBUG=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		if godebug != "" {
			cmd.Env = append(cmd.Env, "GODEBUG="+godebug)
		}
		cmd.Stdout, cmd.Stderr = testWriter{t}, testWriter{t}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
		waitFor(t, 30*time.Second, "the hub to answer /readyz", func() bool {
			res, err := http.Get("http://" + env["PARTNERHUB_ADDR"] + "/readyz")
			if err != nil {
				return false
			}
			res.Body.Close()
			return res.StatusCode == http.StatusOK
		})
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		var godebugs []string
		for _, kv := range bytes.Split(raw, []byte{0}) {
			if v, ok := strings.CutPrefix(string(kv), "GODEBUG="); ok {
				godebugs = append(godebugs, v)
			}
		}
		return godebugs
	}
	t.Run("default", func(t *testing.T) {
		if got := serve(t, ""); !slices.Equal(got, []string{quietSysmon}) {
			t.Fatalf("the serving process has GODEBUG %q, want [%q]", got, quietSysmon)
		}
	})
	t.Run("with other settings", func(t *testing.T) {
		want := "madvdontneed=1," + quietSysmon
		if got := serve(t, "madvdontneed=1"); !slices.Equal(got, []string{want}) {
			t.Fatalf("the serving process has GODEBUG %q, want [%q]", got, want)
		}
	})
	t.Run("the operator's schedtrace=0", func(t *testing.T) {
		if got := serve(t, "schedtrace=0"); !slices.Equal(got, []string{"schedtrace=0"}) {
			t.Fatalf("the serving process has GODEBUG %q, want [\"schedtrace=0\"]", got)
		}
	})
}
