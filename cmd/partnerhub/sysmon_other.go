//go:build !unix

package main

// reexecQuietSysmon does nothing where a process cannot exec itself.
func reexecQuietSysmon() error { return nil }
