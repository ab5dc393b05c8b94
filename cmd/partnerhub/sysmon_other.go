//go:build !unix

package main

// reexecQuietSysmon does nothing where syscall.Exec does not replace the
// program in the same process (Windows, Plan 9): serve runs with the
// runtime's default sysmon there.
func reexecQuietSysmon() error { return nil }
