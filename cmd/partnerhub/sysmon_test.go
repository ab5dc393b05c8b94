package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
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
		{"the operator's schedtrace among others", []string{"PATH=/bin", "GODEBUG=gctrace=1,schedtrace=1000"}, nil},
		{"a padded key is not schedtrace to the runtime", []string{"GODEBUG=gctrace=1, schedtrace=1000"},
			[]string{"GODEBUG=gctrace=1, schedtrace=1000," + quietSysmon}},
		{"the first GODEBUG is the one the runtime reads", []string{"GODEBUG=schedtrace=0", "GODEBUG=gctrace=1"}, nil},
		{"later GODEBUG entries dropped", []string{"GODEBUG=gctrace=1", "HOME=/", "GODEBUG=schedtrace=0"},
			[]string{"HOME=/", "GODEBUG=gctrace=1," + quietSysmon}},
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

// The runtime ignores a schedtrace it cannot read as a positive int32.
func TestQuietSysmonValue(t *testing.T) {
	v, ok := strings.CutPrefix(quietSysmon, "schedtrace=")
	n, err := strconv.ParseInt(v, 10, 32)
	if !ok || err != nil || n <= 0 {
		t.Fatalf("quietSysmon = %q: want schedtrace= a positive int32 (%v)", quietSysmon, err)
	}
}

func TestQuietsSysmon(t *testing.T) {
	root := newRootCmd(func(string) string { return "" }, io.Discard, io.Discard)
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"serve"}, true},
		{[]string{"serve", "--roles", "api,ingest"}, true},
		{[]string{"--config", "hub.yaml", "serve"}, true},
		{[]string{"migrate"}, false},
		{[]string{"version"}, false},
		{[]string{"bench", "--rate", "10"}, false},
		{[]string{"serve-x"}, false},
		{nil, false},
	} {
		if got := quietsSysmon(root, tc.args); got != tc.want {
			t.Errorf("quietsSysmon(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

// TestServeQuietSysmon runs the built binary's serve command and reads
// the environment the running process has: serve restarts itself, in
// the same process, with quietSysmon in GODEBUG, and leaves an
// operator's own schedtrace setting alone.
func TestServeQuietSysmon(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the partnerhub binary")
	}
	if runtime.GOOS != "linux" {
		t.Skip("reads the process's environment from /proc")
	}
	bin := filepath.Join(t.TempDir(), "partnerhub")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building partnerhub: %v\n%s", err, out)
	}
	// serve starts prog serve and returns the serving process's GODEBUG
	// entries and its name.
	serve := func(t *testing.T, prog, godebug string) ([]string, string) {
		env := testEnv(t)
		env["REDIS_URL"] = "" // the in-process queue: nothing shared
		env["PARTNERHUB_ADDR"] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		cmd := exec.Command(prog, "serve")
		for _, kv := range os.Environ() {
			k, _, _ := strings.Cut(kv, "=")
			if _, set := env[k]; !set && k != "GODEBUG" {
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
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Errorf("the hub did not stop within 30 s of SIGTERM; killing it")
				_ = cmd.Process.Kill()
				<-done
			}
		})
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
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		return godebugs, strings.TrimSpace(string(comm))
	}
	t.Run("default", func(t *testing.T) {
		if got, _ := serve(t, bin, ""); !slices.Equal(got, []string{quietSysmon}) {
			t.Fatalf("the serving process has GODEBUG %q, want [%q]", got, quietSysmon)
		}
	})
	t.Run("with other settings", func(t *testing.T) {
		want := "madvdontneed=1," + quietSysmon
		if got, _ := serve(t, bin, "madvdontneed=1"); !slices.Equal(got, []string{want}) {
			t.Fatalf("the serving process has GODEBUG %q, want [%q]", got, want)
		}
	})
	t.Run("the operator's schedtrace=0", func(t *testing.T) {
		if got, _ := serve(t, bin, "schedtrace=0"); !slices.Equal(got, []string{"schedtrace=0"}) {
			t.Fatalf("the serving process has GODEBUG %q, want [\"schedtrace=0\"]", got)
		}
	})
	t.Run("started through a symbolic link, keeps its name", func(t *testing.T) {
		link := filepath.Join(t.TempDir(), "ph-link")
		if err := os.Symlink(bin, link); err != nil {
			t.Fatal(err)
		}
		got, comm := serve(t, link, "")
		if !slices.Equal(got, []string{quietSysmon}) || comm != "ph-link" {
			t.Fatalf("the serving process has GODEBUG %q and name %q, want [%q] and \"ph-link\"", got, comm, quietSysmon)
		}
	})
}
