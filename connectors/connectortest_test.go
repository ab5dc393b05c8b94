package connectors

// Helpers shared by every connector's tests: case files, golden files, a
// fixed clock, and the golden suite each connector runs over its fixtures.

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/partnerhub/partnerhub/hub"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// testNow is the fixed clock of connector tests: signatures are computed
// and verified at this instant.
var testNow = time.Date(2024, time.May, 1, 12, 0, 0, 0, time.UTC)

// connectorCase is one testdata/<provider>/<case>.json file: the request
// headers (signature headers excepted: tests sign at run time), optional
// source options, and the raw body exactly as the provider sends it.
type connectorCase struct {
	Name    string            `json:"-"`
	Path    string            `json:"-"`
	Headers map[string]string `json:"headers"`
	Options map[string]string `json:"options,omitempty"`
	Body    json.RawMessage   `json:"body"`
}

// Header returns the case's headers as an http.Header.
func (c connectorCase) Header() http.Header {
	h := http.Header{}
	for k, v := range c.Headers {
		h.Set(k, v)
	}
	return h
}

// GoldenPath is where the case's normalized output is kept.
func (c connectorCase) GoldenPath() string {
	return strings.TrimSuffix(c.Path, ".json") + ".golden.json"
}

// loadCase reads one case file.
func loadCase(tb testing.TB, path string) connectorCase {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("reading case: %v", err)
	}
	var c connectorCase
	if err := json.Unmarshal(b, &c); err != nil {
		tb.Fatalf("decoding case %s: %v", path, err)
	}
	if len(c.Body) == 0 {
		tb.Fatalf("case %s has no body", path)
	}
	c.Path = path
	c.Name = strings.TrimSuffix(filepath.Base(path), ".json")
	return c
}

// loadCases reads every case of dir (golden files excepted), sorted by
// name.
func loadCases(tb testing.TB, dir string) []connectorCase {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		tb.Fatal(err)
	}
	sort.Strings(paths)
	var cs []connectorCase
	for _, p := range paths {
		if strings.HasSuffix(p, ".golden.json") {
			continue
		}
		cs = append(cs, loadCase(tb, p))
	}
	if len(cs) == 0 {
		tb.Fatalf("no cases in %s", dir)
	}
	return cs
}

// compareGolden compares got, as indented JSON, with the golden file at
// path; with -update it rewrites the file instead.
func compareGolden(t *testing.T, path string, got any) {
	t.Helper()
	b, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatalf("encoding result: %v", err)
	}
	b = append(b, '\n')
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatalf("writing golden file: %v", err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(want, b) {
		t.Errorf("result differs from %s (-want +got):\n%s", path, cmp.Diff(string(want), string(b)))
	}
}

// goldenSuite describes a connector's golden run: every case of Dir is
// signed with Secret at testNow, verified, normalized and compared with
// its golden file.
type goldenSuite struct {
	Dir       string
	Connector Connector
	Secret    string
	// Sign adds the provider's signature headers for body to h.
	Sign func(secret string, now time.Time, body []byte, h http.Header)
	// DedupeKey, when set, returns the dedupe key expected for a case.
	DedupeKey func(c connectorCase) string
}

// runGolden runs the suite, one subtest per case.
func runGolden(t *testing.T, s goldenSuite) {
	t.Helper()
	for _, c := range loadCases(t, s.Dir) {
		t.Run(c.Name, func(t *testing.T) {
			src := &hub.Source{
				ID:        "src_test",
				ProgramID: hub.DefaultProgramID,
				Provider:  s.Connector.Provider(),
				Secret:    s.Secret,
				Options:   c.Options,
			}
			h := c.Header()
			s.Sign(s.Secret, testNow, c.Body, h)
			r, err := s.Connector.Verify(src, h, c.Body, testNow)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if s.DedupeKey != nil {
				if want := s.DedupeKey(c); r.DedupeKey != want {
					t.Errorf("DedupeKey = %q, want %q", r.DedupeKey, want)
				}
			}
			ev := &hub.InboundEvent{
				ID:         "ie_test",
				ProgramID:  src.ProgramID,
				SourceID:   src.ID,
				Provider:   src.Provider,
				DedupeKey:  r.DedupeKey,
				EventType:  r.EventType,
				Headers:    r.Headers,
				Body:       c.Body,
				Status:     hub.InboundReceived,
				ReceivedAt: testNow,
			}
			n, err := s.Connector.Normalize(src, ev)
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			checkNormalized(t, n)
			compareGolden(t, c.GoldenPath(), n)
		})
	}
}

// checkNormalized asserts the invariants of hub.Normalized that every
// connector must keep.
func checkNormalized(tb testing.TB, n *hub.Normalized) {
	tb.Helper()
	if n == nil {
		tb.Fatal("nil Normalized without error")
	}
	facts := 0
	if n.Payment != nil {
		facts++
		if len(n.Payment.Keys) == 0 {
			tb.Error("payment without keys")
		}
		if n.Payment.Currency == "" {
			tb.Error("payment without currency")
		}
	}
	if n.Refund != nil {
		facts++
		if len(n.Refund.Keys) == 0 {
			tb.Error("refund without keys")
		}
	}
	if n.Dispute != nil {
		facts++
		if len(n.Dispute.Keys) == 0 {
			tb.Error("dispute without keys")
		}
	}
	if n.Link != nil {
		facts++
		if len(n.Link.Keys) < 2 {
			tb.Error("link with fewer than two keys")
		}
	}
	if n.Redact != nil {
		facts++
		if n.Redact.CustomerRef == "" && len(n.Redact.Subjects) == 0 && !n.Redact.Source {
			tb.Error("redaction naming nothing")
		}
	}
	if n.Ignored != "" && facts != 0 {
		tb.Errorf("ignored (%q) but carries a fact", n.Ignored)
	}
	if n.Ignored == "" && facts != 1 {
		tb.Errorf("want exactly one fact, got %d", facts)
	}
}

// wantErrIs fails unless err wraps target.
func wantErrIs(tb testing.TB, err, target error) {
	tb.Helper()
	if !errors.Is(err, target) {
		tb.Fatalf("error = %v, want one wrapping %v", err, target)
	}
}
