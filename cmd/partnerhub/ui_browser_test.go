package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// uiE2EDir holds the Playwright script and its npm lock.
const uiE2EDir = "../../hub/ui/e2e"

// browserDeps finds node, playwright-core (npm ci in hub/ui/e2e) and
// Chromium. Without them the test skips, or fails when CI=true.
func browserDeps(t *testing.T) (node, chromium string) {
	t.Helper()
	missing := func(msg string) {
		msg += ": the dashboard is not tested in a browser"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node not found")
	}
	if _, err := os.Stat(filepath.Join(uiE2EDir, "node_modules", "playwright-core", "package.json")); err != nil {
		missing("playwright-core is not installed (run npm ci in hub/ui/e2e)")
	}
	chromium = os.Getenv("PARTNERHUB_CHROMIUM")
	if chromium == "" {
		for _, name := range []string{"chromium", "chromium-browser"} {
			if p, err := exec.LookPath(name); err == nil {
				chromium = p
				break
			}
		}
	}
	if chromium == "" {
		missing("Chromium not found (install Debian's chromium package or set PARTNERHUB_CHROMIUM)")
	}
	return node, chromium
}

// TestUIInBrowser runs hub/ui/e2e/dashboard.mjs against a seeded hub: an
// admin finds the delivery that failed when the endpoint answered 410,
// re-enables the endpoint, retries the delivery and watches it succeed,
// sends a test event and runs a payout; a partner sees its own link and
// earnings and nothing of the other partner, and manages its endpoint.
func TestUIInBrowser(t *testing.T) {
	node, chromium := browserDeps(t)
	s := seedUI(t)
	s.rcv.succeed() // the merchant fixed the receiver; the endpoint stays disabled until re-enabled

	shots, err := filepath.Abs(filepath.Join(uiE2EDir, "screenshots"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "dashboard.mjs")
	cmd.Dir = uiE2EDir
	cmd.Env = append(os.Environ(),
		"PARTNERHUB_URL="+s.h.base,
		"ADMIN_KEY="+testAdminKey,
		"PARTNER_KEY="+s.aliceKey,
		"OWN_CODE=alice",
		"OTHER_NAME=Bob Other",
		"OTHER_CONVERSION="+s.bobConv,
		"RECEIVER_URL="+s.rcv.srv.URL,
		"CHROMIUM="+chromium,
		"SCREENSHOTS="+shots,
	)
	out, err := cmd.CombinedOutput()
	t.Logf("dashboard.mjs:\n%s", strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("dashboard.mjs: %v", err)
	}
	if !strings.Contains(string(out), "UI E2E OK") {
		t.Fatal("dashboard.mjs did not report success")
	}

	// What the browser did, as the API sees it.
	var d map[string]any
	s.h.api("GET", "/deliveries/"+s.failedID, nil, &d)
	if !strings.Contains(string(out), `"delivery":"`) {
		t.Error("the script did not report the delivery it retried")
	}
	var retried map[string]any
	id := between(string(out), `"delivery":"`, `"`)
	s.h.api("GET", "/deliveries/"+id, nil, &retried)
	if retried["status"] != "succeeded" {
		t.Errorf("delivery %s is %v after the retry, want succeeded", id, retried["status"])
	}
	var p map[string]any
	s.h.api("GET", "/payouts/"+between(string(out), `"payout":"`, `"`), nil, &p)
	if p["status"] != "confirmed" {
		t.Errorf("payout run is %v, want confirmed", p["status"])
	}
	if s.rcv.received() == 0 {
		t.Error("the receiver got no delivery")
	}
}

func between(s, from, to string) string {
	_, after, ok := strings.Cut(s, from)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, to)
	return v
}
