//go:build unix

package main

import (
	"os"
	"syscall"
)

// reexecQuietSysmon runs this program again, in this process, with
// quietSysmon in GODEBUG, which the runtime reads only at start. It
// returns only when GODEBUG already sets schedtrace (nil) or the exec
// failed (the error).
func reexecQuietSysmon() error {
	env, ok := sysmonEnv(os.Environ())
	if !ok {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return syscall.Exec(exe, os.Args, env)
}
