package main

import "strings"

// The Go runtime's monitor thread, sysmon, preempts goroutines that run
// too long and takes processors back from system calls. While every
// processor is idle it sleeps until the next timer; the first system call
// or garbage collection after such an idle moment wakes it, and it then
// polls every 20 µs for a millisecond before it slows down again
// (runtime/proc.go, sysmon; golang/go#18236). A hub that receives from a
// few to a few hundred webhooks a second goes idle and wakes again
// hundreds of times a second, so its sysmon polls at 20 µs nearly all the
// time: about 4,000 wake-ups a second and 15 % of the hub's CPU at 500
// sales/s on a 2-vCPU virtual machine, and half of an idle hub's CPU.
//
// GODEBUG=schedtrace=N (N > 0) keeps sysmon out of that idle sleep, so
// nothing sets it back to 20 µs: while it finds nothing to do it doubles
// its sleep up to 10 ms, as it does when the hub is busy all the time.
// Its other effect is one SCHED line on standard error every N
// milliseconds, counted from the machine's boot; with the largest N, once
// every 24.8 days. `partnerhub serve` runs with it unless GODEBUG already
// sets schedtrace (schedtrace=0 keeps the runtime's default).
const quietSysmon = "schedtrace=2147483647"

// sysmonEnv returns environ with quietSysmon added to GODEBUG, and false
// when GODEBUG already sets schedtrace.
func sysmonEnv(environ []string) ([]string, bool) {
	out := make([]string, 0, len(environ)+1)
	godebug := ""
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			godebug = v
			continue
		}
		out = append(out, kv)
	}
	for _, setting := range strings.Split(godebug, ",") {
		if strings.HasPrefix(strings.TrimSpace(setting), "schedtrace=") {
			return environ, false
		}
	}
	if godebug != "" {
		godebug += ","
	}
	return append(out, "GODEBUG="+godebug+quietSysmon), true
}
