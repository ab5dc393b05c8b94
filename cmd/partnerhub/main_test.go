package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func runCLI(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newRootCmd(func(k string) string { return env[k] }, &out, &out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestVersion(t *testing.T) {
	out, err := runCLI(t, nil, "version")
	if err != nil || !strings.HasPrefix(out, "partnerhub ") {
		t.Fatalf("version: %q, %v", out, err)
	}
}

func TestServeReportsEveryConfigProblem(t *testing.T) {
	_, err := runCLI(t, map[string]string{
		"PARTNERHUB_ADMIN_KEY": "short",
		"DATABASE_URL":         "mysql://nope",
		"PARTNERHUB_LOG_LEVEL": "loud",
	}, "serve")
	if err == nil {
		t.Fatal("serve started with an invalid configuration")
	}
	for _, name := range []string{"PARTNERHUB_ADMIN_KEY", "DATABASE_URL", "PARTNERHUB_LOG_LEVEL"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestMigrate(t *testing.T) {
	env := testEnv(t)
	for range 2 { // idempotent
		if out, err := runCLI(t, env, "migrate"); err != nil {
			t.Fatalf("migrate: %v\n%s", err, out)
		}
	}
}
