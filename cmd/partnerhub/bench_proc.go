package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// What the bench reads of the processes of the stack on this machine
// (Linux /proc) and of the hub's /metrics.

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux platform Go supports.
const clockTicks = 100

// procCPU returns a process's CPU time in clock ticks: its own (utime +
// stime) plus that of the children it has reaped (cutime + cstime), so a
// PostgreSQL backend that exits during the run still counts through the
// postmaster. A process that has exited and is not reaped yet (a zombie)
// does not count: its time is carried by its parent once reaped, and an
// orphan's (a postmaster stopped just before the run) by no process the
// bench reads, which would subtract a whole earlier server's CPU from the
// run's.
func procCPU(pid int) (int64, bool) {
	f, ok := procStat(pid)
	if !ok || len(f) < 15 || f[0] == "Z" {
		return 0, false
	}
	var total int64
	for _, x := range f[11:15] {
		v, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return 0, false
		}
		total += v
	}
	return total, true
}

// procStat returns the fields of /proc/<pid>/stat after "(comm)": f[0] is
// the state (field 3), f[11:15] utime … cstime (fields 14-17).
func procStat(pid int) ([]string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:]), true
}

// procsByComm lists the processes whose command name is one of names.
func procsByComm(names ...string) map[int]string {
	out := map[int]string{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", d.Name(), "comm"))
		if err != nil {
			continue
		}
		c := strings.TrimSpace(string(comm))
		for _, n := range names {
			if c == n {
				out[pid] = c
			}
		}
	}
	return out
}

// cpuSnapshot is the CPU time of the stack's processes at one time, in
// clock ticks: the hub, and every postgres and redis-server process.
type cpuSnapshot struct {
	hub, postgres, redis int64
}

func takeCPU(hubPID int) cpuSnapshot {
	var s cpuSnapshot
	if hubPID > 0 {
		s.hub, _ = procCPU(hubPID)
	}
	for pid, comm := range procsByComm("postgres", "redis-server") {
		if pid == hubPID {
			continue
		}
		v, ok := procCPU(pid)
		if !ok {
			continue
		}
		if comm == "postgres" {
			s.postgres += v
		} else {
			s.redis += v
		}
	}
	return s
}

// listenerPID finds the process listening on a local TCP port through
// /proc/net/tcp{,6} and the sockets in /proc/*/fd; 0 when it cannot be
// seen (another user's process, another network namespace).
func listenerPID(port int) int {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0
	}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join("/proc", d.Name(), "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join("/proc", d.Name(), "fd", fd.Name())); err == nil && inodes[l] {
				return pid
			}
		}
	}
	return 0
}

// procRSS returns a process's resident set size in bytes.
func procRSS(pid int) (int64, bool) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// rssSampler keeps the peak RSS of a process, sampled every 100 ms.
type rssSampler struct {
	mu   sync.Mutex
	peak int64
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if v, ok := procRSS(pid); ok {
				s.mu.Lock()
				s.peak = max(s.peak, v)
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends the sampling and returns the peak.
func (s *rssSampler) Stop() int64 {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// hubMetrics is what the bench reads of the hub's /metrics.
type hubMetrics struct {
	sqlStatements float64
	sqlDialect    string // the dialect with statements
	cpuSeconds    float64
	inbound       map[string]float64 // webhooks received at /in by outcome, all providers
}

// scrapeMetrics reads /metrics of the hub at base.
func scrapeMetrics(ctx context.Context, client *http.Client, base string) (hubMetrics, error) {
	m := hubMetrics{inbound: map[string]float64{}}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return m, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return m, fmt.Errorf("reading /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return m, fmt.Errorf("reading /metrics: %s", resp.Status)
	}
	found := false
	var most float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(name, "partnerhub_sql_statements_total"):
			found = true
			m.sqlStatements += v
			if v > most {
				most = v
				_, d, _ := strings.Cut(name, `dialect="`)
				m.sqlDialect, _, _ = strings.Cut(d, `"`)
			}
		case name == "process_cpu_seconds_total":
			m.cpuSeconds = v
		case strings.HasPrefix(name, "partnerhub_inbound_webhooks_total{"):
			_, o, _ := strings.Cut(name, `outcome="`)
			o, _, _ = strings.Cut(o, `"`)
			m.inbound[o] += v
		}
	}
	if err := sc.Err(); err != nil {
		return m, fmt.Errorf("reading /metrics: %w", err)
	}
	if !found {
		return m, fmt.Errorf("/metrics has no partnerhub_sql_statements_total: the hub is older than the bench")
	}
	return m, nil
}

// pgCalls sums the calls pg_stat_statements recorded in the current
// database of dsn (utility statements such as BEGIN and COMMIT included
// when pg_stat_statements.track_utility is on, its default).
func pgCalls(ctx context.Context, dsn string) (int64, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var n int64
	err = db.QueryRowContext(ctx, `SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("reading pg_stat_statements: %w", err)
	}
	return n, nil
}
