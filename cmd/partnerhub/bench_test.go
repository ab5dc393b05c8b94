package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runBenchCmd runs `partnerhub bench` against h and returns its JSON
// report.
func runBenchCmd(t *testing.T, h *hubUnderTest, args ...string) (*benchReport, string) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCmd(func(string) string { return "" }, &out, &errb)
	cmd.SetArgs(append([]string{"bench", "--url", h.base, "--key", testAdminKey, "-o", "json",
		"--hub-pid", strconv.Itoa(os.Getpid()), "--drain-timeout", "30s"}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatalf("bench %v: %v\nstdout: %s\nstderr: %s", args, err, out.String(), errb.String())
	}
	var rep benchReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("bench -o json printed %q: %v", out.String(), err)
	}
	return &rep, errb.String()
}

// TestBench loads a real hub (embedded, or DATABASE_URL and REDIS_URL)
// closed loop and open loop, and checks that every sale reached both
// endpoints exactly once and that every figure was measured.
func TestBench(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	h := startHub(t, testEnv(t), Options{})
	for _, tc := range []struct {
		name      string
		args      []string
		sent      int64
		endpoints int64
	}{
		{"closed loop", []string{"--events", "200", "--concurrency", "8"}, 200, 1},
		{"open loop", []string{"--rate", "100", "--duration", "2s"}, 200, 1},
		{"two endpoints", []string{"--events", "100", "--concurrency", "8", "--endpoints", "2"}, 100, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, progress := runBenchCmd(t, h, tc.args...)
			b, _ := json.MarshalIndent(rep, "", " ")
			t.Logf("%s", b)
			if rep.Sent != tc.sent || rep.Accepted != tc.sent || len(rep.Non2xx) != 0 {
				t.Errorf("sent %d, accepted %d, non-2xx %v; want %d accepted", rep.Sent, rep.Accepted, rep.Non2xx, tc.sent)
			}
			if rep.Missing != 0 || rep.Duplicates != 0 || rep.BadSignatures != 0 || rep.Unmatched != 0 || !rep.Pass {
				t.Errorf("missing %d, duplicates %d, bad signatures %d, unmatched %d, pass %v",
					rep.Missing, rep.Duplicates, rep.BadSignatures, rep.Unmatched, rep.Pass)
			}
			// Each endpoint receives every sale's conversion.created and
			// commission.created.
			want := 2 * tc.endpoints * tc.sent
			if rep.Completed != tc.sent || rep.DeliveriesReceived != want || rep.DeliveriesExpected != want || rep.Endpoints != int(tc.endpoints) {
				t.Errorf("completed %d, deliveries %d of %d at %d endpoints; want %d and %d", rep.Completed, rep.DeliveriesReceived, rep.DeliveriesExpected, rep.Endpoints, tc.sent, want)
			}
			for name, v := range map[string]float64{
				"ingest accepted/s": rep.AcceptedPerSec, "ingest p50": rep.Ingest.P50, "ingest p99": rep.Ingest.P99,
				"ingest p99.9": rep.Ingest.P999, "end-to-end p50": rep.EndToEnd.P50, "end-to-end p99": rep.EndToEnd.P99,
				"deliveries/s": rep.DeliveriesPerSec, "CPU per conversion": rep.CPUPerConversion,
				"hub peak RSS": float64(rep.HubPeakRSSBytes), "SQL statements per conversion": rep.SQLPerConversion,
			} {
				if !(v > 0) {
					t.Errorf("%s = %v, want > 0", name, v)
				}
			}
			if rep.Ingest.P50 > rep.Ingest.P99 || rep.EndToEnd.P50 > rep.EndToEnd.P99 || rep.EndToEnd.P50 < rep.Ingest.P50/10 {
				t.Errorf("latencies out of order: ingest %+v, end to end %+v", rep.Ingest, rep.EndToEnd)
			}
			if tc.name == "open loop" && (rep.SendSeconds < 1.9 || rep.SendSeconds > 4) {
				t.Errorf("open loop at 100/s for 2s sent for %.2fs", rep.SendSeconds)
			}
			// A sale's rows are written in statements it shares with its
			// batch (its webhook, its conversion and commission, its
			// deliveries and their attempts): a few for a sale alone, a
			// fraction of one in a large batch; a run of a hundred sales
			// has some of both.
			if rep.SQLPerConversion < 0.5 || rep.SQLPerConversion > 500 {
				t.Errorf("SQL statements per conversion = %v", rep.SQLPerConversion)
			}
			if !strings.Contains(progress, "bench: sent ") {
				t.Errorf("no progress line on stderr: %q", progress)
			}
		})
	}
}

// TestBenchFlags checks that the bench refuses a run it cannot measure
// before it creates anything in the hub (the URL answers nothing).
func TestBenchFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--endpoints", "0"}, "--endpoints: 0; want 1 to 2"},
		{[]string{"--endpoints", "3"}, "--endpoints: 3; want 1 to 2"},
		{[]string{"--rate", "10"}, "--rate needs --duration"},
		{[]string{"--duration", "1s"}, "--duration needs --rate"},
		{[]string{"--provider", "gumroad"}, `--provider: "gumroad" has no test events`},
		{[]string{"--events", "0"}, "want 1 to 10^8"},
	} {
		var out, errb bytes.Buffer
		cmd := newRootCmd(func(string) string { return "" }, &out, &errb)
		cmd.SetArgs(append([]string{"bench", "--url", "http://127.0.0.1:1", "--key", testAdminKey}, tc.args...))
		err := cmd.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench %v: %v; want an error containing %q", tc.args, err, tc.want)
		}
	}
}

// TestBenchProviders runs a few sales of every provider with test events.
func TestBenchProviders(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	h := startHub(t, testEnv(t), Options{})
	for _, p := range []string{"shopify", "woocommerce", "paddle"} {
		t.Run(p, func(t *testing.T) {
			rep, _ := runBenchCmd(t, h, "--provider", p, "--events", "20", "--concurrency", "4")
			if rep.Accepted != 20 || rep.Missing != 0 || rep.Duplicates != 0 || rep.Completed != 20 {
				t.Errorf("accepted %d, completed %d, missing %d, duplicates %d, non-2xx %v",
					rep.Accepted, rep.Completed, rep.Missing, rep.Duplicates, rep.Non2xx)
			}
		})
	}
}

// TestProcCPUSkipsZombies: a process that has exited but is not reaped yet
// counts for nothing, while a running one counts its time.
func TestProcCPUSkipsZombies(t *testing.T) {
	if _, ok := procCPU(os.Getpid()); !ok {
		t.Fatal("procCPU cannot read this process")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start a child process: %v", err)
	}
	defer cmd.Wait()
	// Not waited for: once it has exited it is a zombie.
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, ok := procStat(cmd.Process.Pid)
		if !ok || len(f) == 0 {
			t.Fatal("cannot read the child's /proc stat")
		}
		if f[0] == "Z" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child never exited")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if v, ok := procCPU(cmd.Process.Pid); ok {
		t.Errorf("procCPU of a zombie = %d, true; want not counted", v)
	}
}

// TestLatencyHist checks the histogram's quantiles against exact ones.
func TestLatencyHist(t *testing.T) {
	var h latencyHist
	vals := make([]time.Duration, 100_000)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range vals {
		vals[i] = time.Duration(r.ExpFloat64() * float64(5*time.Millisecond))
		h.Record(vals[i])
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.99, 0.999} {
		exact := vals[int(q*float64(len(vals)))-1]
		got := h.Quantile(q)
		if d := float64(got-exact) / float64(exact); d > 0.02 || d < -0.02 {
			t.Errorf("q%v = %v, exact %v", q, got, exact)
		}
	}
	for _, v := range []uint64{0, 1, 127, 128, 129, 1 << 20, 1<<63 - 1} {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d out of range", v, i)
		}
		if m := histMid(i); v >= 128 && (float64(m) < float64(v)*0.98 || float64(m) > float64(v)*1.02) {
			t.Errorf("bucket of %d has middle %d", v, m)
		}
	}
}

// TestBenchProfileLoad runs a larger closed loop against an in-process
// hub when PARTNERHUB_BENCH_EVENTS is set, so that
//
//	PARTNERHUB_BENCH_EVENTS=5000 go test ./cmd/partnerhub -run TestBenchProfileLoad -cpuprofile cpu.out
//
// profiles the hub under load (the bench's own sender and receiver show
// up under bench* functions).
func TestBenchProfileLoad(t *testing.T) {
	n := os.Getenv("PARTNERHUB_BENCH_EVENTS")
	if n == "" {
		t.Skip("set PARTNERHUB_BENCH_EVENTS to profile the hub under load")
	}
	h := startHub(t, testEnv(t), Options{})
	var out, errb bytes.Buffer
	cmd := newRootCmd(func(string) string { return "" }, &out, &errb)
	cmd.SetArgs([]string{"bench", "--url", h.base, "--key", testAdminKey, "--hub-pid", strconv.Itoa(os.Getpid()),
		"--events", n, "--concurrency", "64", "--drain-timeout", "300s"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("bench: %v\n%s", err, errb.String())
	}
	t.Logf("\n%s", out.String())
}
