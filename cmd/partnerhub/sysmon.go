package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// The Go runtime's monitor thread, sysmon, preempts goroutines that run
// too long and takes processors back from long system calls. While every
// processor is idle it sleeps until the next timer; when a system call is
// entered or left, or a stop-the-world (a garbage collection) ends, during
// that sleep, it is woken and goes back to polling every 20 µs, and only
// after 50 polls in a row with nothing to do does it start doubling its
// sleep (runtime/proc.go, sysmon). A hub that receives from a few to a few
// hundred webhooks a second goes idle and wakes again hundreds of times a
// second, so its sysmon polls at 20 µs nearly all the time: on a 2-vCPU
// virtual machine at 500 sales/s, about 4,000 wake-ups a second and 15 %
// of the hub's profile.
//
// GODEBUG=schedtrace=N (N > 0) keeps sysmon out of that idle sleep. It
// then goes back to 20 µs only when it has taken a processor back from a
// system call, and otherwise backs off to one look every 10 ms, as under
// a steady load. Measured on that machine: the hub's CPU a fifth to a
// third lower at 500 sales/s and a third lower at 10/s, an idle hub's
// halved, p99 lower at 500/s and within run-to-run spread at 10, 250 and
// 1,500/s, no CPU difference at 1,500/s. The setting's other effects:
// sysmon looks every 10 ms even when the hub is idle; right after an idle
// moment, a processor stuck in a long system call is taken back after up
// to 10 ms instead of 20 µs; on a fatal error the runtime also writes a
// scheduler dump (a line per processor, thread and goroutine); and it
// writes one SCHED line to standard error every N ms of the system's
// monotonic clock, so with the largest N every 24.8 days, and at start on
// a system up longer than that.
const quietSysmon = "schedtrace=2147483647"

// quietsSysmon reports whether args (without the program name) run the
// serve command of root, the one command that restarts itself with
// quietSysmon.
func quietsSysmon(root *cobra.Command, args []string) bool {
	cmd, _, err := root.Find(args)
	return err == nil && cmd.Name() == "serve" && cmd.Parent() == root
}

// sysmonEnv returns environ with quietSysmon added to GODEBUG, and false
// when GODEBUG already sets schedtrace. As the runtime does, it reads the
// first GODEBUG entry and the settings as written (" schedtrace=1" is
// not schedtrace); the result has a single GODEBUG entry.
func sysmonEnv(environ []string) ([]string, bool) {
	out := make([]string, 0, len(environ)+1)
	godebug, seen := "", false
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			if !seen {
				godebug, seen = v, true
			}
			continue
		}
		out = append(out, kv)
	}
	for _, setting := range strings.Split(godebug, ",") {
		if strings.HasPrefix(setting, "schedtrace=") {
			return environ, false
		}
	}
	if godebug != "" {
		godebug += ","
	}
	return append(out, "GODEBUG="+godebug+quietSysmon), true
}
