//go:build faults

package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binary is the partnerhub binary TestMain builds once for every test.
var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "partnerhub-faults-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "partnerhub")
	build := exec.Command("go", "build", "-o", binary, "github.com/partnerhub/partnerhub/cmd/partnerhub")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building partnerhub: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}
