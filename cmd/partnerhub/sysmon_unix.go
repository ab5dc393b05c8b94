//go:build unix

package main

import (
	"os"
	"os/exec"
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
	return syscall.Exec(sameProgram(exe), os.Args, env)
}

// sameProgram is the path this program was started by when it names the
// same file as exe (which has its symbolic links resolved), so that the
// process keeps the name it was started with; exe otherwise.
func sameProgram(exe string) string {
	path, err := exec.LookPath(os.Args[0])
	if err != nil {
		return exe
	}
	a, err := os.Stat(path)
	if err != nil {
		return exe
	}
	b, err := os.Stat(exe)
	if err != nil || !os.SameFile(a, b) {
		return exe
	}
	return path
}
