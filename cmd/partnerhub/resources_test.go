package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestResourceCommands drives the sources, partners, keys and reports
// commands against a running hub, as a merchant would from a terminal.
func TestResourceCommands(t *testing.T) {
	h := startHub(t, testEnv(t), Options{})
	env := map[string]string{"PARTNERHUB_URL": h.base, "PARTNERHUB_KEY": testAdminKey}
	run := func(args ...string) string {
		t.Helper()
		out, err := runCLI(t, env, args...)
		if err != nil {
			t.Fatalf("partnerhub %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	out := run("partners", "create", "--name", "Alice Example", "--code", "alice", "--email", "alice@example.com")
	if !strings.Contains(out, "code:") || !strings.Contains(out, "alice") {
		t.Fatalf("partners create printed:\n%s", out)
	}
	partnerID := regexp.MustCompile(`ptn_[0-9a-z]+`).FindString(out)

	secret := "whsec_cli_" + randHex(8)
	out = run("sources", "create", "--provider", "stripe", "--name", "Stripe live", "--secret", secret)
	srcID := regexp.MustCompile(`src_[0-9a-z]+`).FindString(out)
	if srcID == "" || !strings.Contains(out, "https://hub.example.com/in/"+srcID) || !strings.Contains(out, "checkout.session.completed") {
		t.Fatalf("sources create printed:\n%s", out)
	}
	id := randHex(6)
	if st, res := h.postStripe(srcID, secret, checkoutCompleted("evt_"+id, "cs_"+id, "pi_"+id, "alice", 5000, 0)); st != 200 {
		t.Fatalf("webhook: %d %v", st, res)
	}
	waitFor(t, 20*time.Second, "the source's last verified webhook in `sources list`", func() bool {
		out, _ := runCLI(t, env, "sources", "list")
		return regexp.MustCompile(srcID + `\s+stripe\s+Stripe live\s+20\d\d-`).MatchString(out)
	})

	out = run("keys", "create", "--name", "alice portal", "--role", "partner", "--partner", partnerID)
	key := regexp.MustCompile(`phk_[A-Za-z0-9_-]{32}`).FindString(out)
	keyID := regexp.MustCompile(`key_[0-9a-z]+`).FindString(out)
	if key == "" || !strings.Contains(out, "shown only now") {
		t.Fatalf("keys create printed:\n%s", out)
	}
	if out := run("keys", "list"); !strings.Contains(out, keyID) || strings.Contains(out, key) {
		t.Fatalf("keys list must show the key's id and never its secret:\n%s", out)
	}

	// The partner's own key reads its report; CSV and JSON too.
	pEnv := map[string]string{"PARTNERHUB_URL": h.base, "PARTNERHUB_KEY": key}
	waitFor(t, 20*time.Second, "alice's commission in her report", func() bool {
		out, err := runCLI(t, pEnv, "reports", "partners")
		return err == nil && regexp.MustCompile(`alice\s+Alice Example\s+\d+\s+USD\s+1\s+50\.00\s+0\.00\s+5\.00\s+0\.00\s+0\.00\s+5\.00`).MatchString(out)
	})
	out, err := runCLI(t, pEnv, "reports", "partners", "-o", "csv")
	if err != nil || !strings.HasPrefix(out, "partner_id,") || !strings.Contains(out, partnerID) {
		t.Fatalf("reports -o csv: %v\n%s", err, out)
	}
	out, err = runCLI(t, pEnv, "reports", "partners", "-o", "json")
	var rep map[string]any
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("reports -o json: %v\n%s", err, out)
	}
	if _, err := runCLI(t, pEnv, "partners", "list"); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("partner key listing partners: %v, want Forbidden", err)
	}

	// Inbound operations: the processed webhook is listed, shown with its
	// conversion, and reprocessed without booking anything twice.
	out = run("inbound", "list", "--status", "processed")
	ibe := regexp.MustCompile(`inb_[0-9a-z]+`).FindString(out)
	if ibe == "" || !strings.Contains(out, "checkout.session.completed") {
		t.Fatalf("inbound list printed:\n%s", out)
	}
	if out := run("inbound", "get", ibe); !strings.Contains(out, `"conversion_ids"`) || !strings.Contains(out, "cnv_") {
		t.Errorf("inbound get printed:\n%s", out)
	}
	if out := run("inbound", "reprocess", "--status", "processed", "--since", "1h"); !strings.Contains(out, "requeued 1 inbound events") {
		t.Errorf("inbound reprocess printed:\n%s", out)
	}
	if out := run("inbound", "reprocess", ibe); !strings.Contains(out, ibe) {
		t.Errorf("inbound reprocess ID printed:\n%s", out)
	}
	waitFor(t, 20*time.Second, "the reprocessed event processed again", func() bool {
		out, _ := runCLI(t, env, "inbound", "list", "--status", "processed")
		return strings.Contains(out, ibe)
	})
	if out := run("reports", "partners", "-o", "json"); !strings.Contains(out, `"net_minor": 500`) {
		t.Errorf("after reprocessing, the report is not 5.00 net:\n%s", out)
	}

	// Endpoints: created with the secret shown once, listed without it.
	out = run("endpoints", "create", "--url", "https://automation.example.com/hooks", "--event-type", "commission.*")
	epSecret := regexp.MustCompile(`whsec_[A-Za-z0-9+/=]+`).FindString(out)
	epID := regexp.MustCompile(`ep_[0-9a-z]+`).FindString(out)
	if epSecret == "" || epID == "" || !strings.Contains(out, "commission.*") {
		t.Fatalf("endpoints create printed:\n%s", out)
	}
	if out := run("endpoints", "list"); !regexp.MustCompile(epID+`\s+https://automation.example.com/hooks\s+true`).MatchString(out) || strings.Contains(out, epSecret) {
		t.Errorf("endpoints list printed:\n%s", out)
	}

	run("keys", "revoke", keyID)
	if _, err := runCLI(t, pEnv, "reports", "partners"); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("revoked key: %v, want an error saying revoked", err)
	}
	if out := run("sources", "update", srcID, "--name", "Stripe (main)"); !strings.Contains(out, "Stripe (main)") {
		t.Errorf("sources update printed:\n%s", out)
	}
	if _, err := runCLI(t, env, "sources", "update", srcID); err == nil || !strings.Contains(err.Error(), "nothing to change") {
		t.Errorf("sources update without flags: %v", err)
	}
}
