package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/netguard"
	"github.com/partnerhub/partnerhub/hub/store"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
	"github.com/partnerhub/partnerhub/outbound"
)

// opsQueue records queued delivery attempts.
type opsQueue struct {
	mu    sync.Mutex
	calls []string
}

func (q *opsQueue) EnqueueProcess(context.Context, string) error { return nil }

func (q *opsQueue) EnqueueDelivery(_ context.Context, id string, _ int, _ time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls = append(q.calls, id)
	return nil
}

// opsHub is the real outbound routes on a test server with a store, a
// receiver that answers 204, and admin, ops and viewer keys.
type opsHub struct {
	url      string
	st       *store.DB
	keys     map[string]string
	endpoint string
}

func newOpsHub(t *testing.T) *opsHub {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t)
	h := &opsHub{st: st, keys: map[string]string{}}
	for _, role := range []string{hub.RoleAdmin, hub.RoleOps, hub.RoleViewer} {
		key := "phk_cli_" + role + "_0123456789abcdef"
		if err := st.CreateAPIKey(ctx, &hub.APIKey{ID: hub.NewID("key"), ProgramID: hub.DefaultProgramID, Name: role,
			Role: role, Hash: hub.HashKey(key), Prefix: key[:8], CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		h.keys[role] = key
	}
	client := netguard.NewClient(netguard.Config{AllowNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	t.Cleanup(client.CloseIdleConnections)
	q := &opsQueue{}
	disp, err := outbound.New(outbound.Config{Client: client, Timeout: 5 * time.Second}, st, q)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(disp.Close)
	e := echo.New()
	e.HTTPErrorHandler = hub.ErrorHandler
	outbound.Mount(e.Group("/api/v1", hub.Auth(st)), st, outbound.APIConfig{Queue: q, Deliver: disp.Deliver})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	h.url = srv.URL

	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(rc.Close)
	ep := &hub.Endpoint{ID: hub.NewID("ep"), ProgramID: hub.DefaultProgramID, URL: rc.URL + "/hooks",
		Secret: outbound.NewSecret(), CreatedAt: time.Now(), DisabledReason: "410 Gone"}
	if err := st.CreateEndpoint(ctx, ep); err != nil {
		t.Fatal(err)
	}
	h.endpoint = ep.ID
	return h
}

// failedEvent writes an event delivered to the endpoint (enabled for the
// time) and records its delivery as failed.
func (h *opsHub) failedEvent(t *testing.T) (*hub.Event, *hub.Delivery) {
	t.Helper()
	ctx := context.Background()
	ep, err := h.st.GetEndpoint(ctx, hub.DefaultProgramID, h.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	enabled := ep.Enabled
	ep.Enabled = true
	if err := h.st.UpdateEndpoint(ctx, ep); err != nil {
		t.Fatal(err)
	}
	e := &hub.Event{ID: hub.NewID("evt"), ProgramID: hub.DefaultProgramID, Type: "commission.created", Data: json.RawMessage(`{}`), CreatedAt: time.Now()}
	var ds []*hub.Delivery
	if err := h.st.InTx(ctx, func(tx hub.Tx) error {
		var err error
		ds, err = tx.InsertEvent(ctx, e)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	d := ds[0]
	d.Status, d.Attempts, d.LastError = hub.DeliveryFailed, 1, "connection_refused: dial tcp"
	if err := h.st.RecordAttempt(ctx, d, &hub.Attempt{Number: 1, Error: d.LastError}); err != nil {
		t.Fatal(err)
	}
	ep.Enabled = enabled
	if err := h.st.UpdateEndpoint(ctx, ep); err != nil {
		t.Fatal(err)
	}
	return e, d
}

func TestOpsCommands(t *testing.T) {
	h := newOpsHub(t)
	evt, failed := h.failedEvent(t)
	_, other := h.failedEvent(t)
	env := map[string]string{"PARTNERHUB_URL": h.url, "PARTNERHUB_KEY": h.keys[hub.RoleOps]}

	// In order: the endpoint is disabled until "enable" runs.
	steps := []struct {
		name    string
		args    []string
		want    []string // substrings of the output
		wantErr string   // substring of the error
	}{
		{name: "list failed", args: []string{"deliveries", "list", "--status", "failed", "--endpoint", h.endpoint, "--since", "1h"},
			want: []string{"ID", "LAST ERROR", failed.ID, other.ID, "connection_refused"}},
		{name: "retry while disabled", args: []string{"deliveries", "retry", failed.ID}, wantErr: "enable it first"},
		{name: "ping while disabled", args: []string{"endpoints", "ping", h.endpoint}, wantErr: "Conflict"},
		{name: "enable", args: []string{"endpoints", "enable", h.endpoint},
			want: []string{"enabled " + h.endpoint, "deliveries retry --endpoint " + h.endpoint}},
		{name: "retry one", args: []string{"deliveries", "retry", failed.ID}, want: []string{"requeued " + failed.ID + ": attempt 2 queued"}},
		{name: "retry one again", args: []string{"deliveries", "retry", failed.ID}, want: []string{"pending already"}},
		{name: "bulk retry", args: []string{"deliveries", "retry", "--endpoint", h.endpoint}, want: []string{"requeued 1 deliveries"}},
		{name: "bulk retry again", args: []string{"deliveries", "retry", "--endpoint", h.endpoint, "--since", "24h"}, want: []string{"requeued 0 deliveries"}},
		{name: "list pending as JSON", args: []string{"deliveries", "list", "--status", "pending", "--json"},
			want: []string{`"data"`, failed.ID, other.ID}},
		{name: "ping", args: []string{"endpoints", "ping", h.endpoint}, want: []string{"answered 204"}},
		{name: "replay", args: []string{"events", "replay", evt.ID, "--endpoint", h.endpoint},
			want: []string{"replaying " + evt.ID + " to " + h.endpoint + ": delivery dlv_"}},
		{name: "replay without endpoint", args: []string{"events", "replay", evt.ID}, wantErr: "--endpoint is required"},
		{name: "bulk retry without filters", args: []string{"deliveries", "retry"}, wantErr: "--endpoint and/or --since"},
		{name: "id and filters", args: []string{"deliveries", "retry", failed.ID, "--endpoint", h.endpoint}, wantErr: "not both"},
		{name: "bad since", args: []string{"deliveries", "list", "--since", "lately"}, wantErr: "--since"},
		{name: "unknown delivery", args: []string{"deliveries", "retry", "dlv_nope"}, wantErr: "Not Found"},
		{name: "field errors", args: []string{"deliveries", "list", "--status", "bogus"}, wantErr: "status must be pending, succeeded or failed"},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runCLI(t, env, tt.args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q\n%s", err, tt.wantErr, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestOpsCommandsConnection(t *testing.T) {
	h := newOpsHub(t)
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{name: "flags", env: nil, args: []string{"--url", h.url + "/api/v1/", "--key", h.keys[hub.RoleViewer]}},
		{name: "flags override the environment", env: map[string]string{"PARTNERHUB_URL": "http://127.0.0.1:1", "PARTNERHUB_KEY": "wrong"},
			args: []string{"--url", h.url, "--key", h.keys[hub.RoleAdmin]}},
		{name: "no key", env: map[string]string{"PARTNERHUB_URL": h.url}, wantErr: "PARTNERHUB_KEY"},
		{name: "wrong key", env: map[string]string{"PARTNERHUB_URL": h.url, "PARTNERHUB_KEY": "nope"}, wantErr: "Unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runCLI(t, tt.env, append([]string{"deliveries", "list"}, tt.args...)...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(out, "STATUS") {
				t.Errorf("%v\n%s", err, out)
			}
		})
	}
	t.Run("viewer may not retry", func(t *testing.T) {
		_, err := runCLI(t, map[string]string{"PARTNERHUB_URL": h.url, "PARTNERHUB_KEY": h.keys[hub.RoleViewer]},
			"endpoints", "enable", h.endpoint)
		if err == nil || !strings.Contains(err.Error(), "Forbidden") {
			t.Errorf("error = %v, want Forbidden", err)
		}
	})
	t.Run("help never shows the key", func(t *testing.T) {
		out, err := runCLI(t, map[string]string{"PARTNERHUB_KEY": "phk_secret_in_env"}, "deliveries", "list", "--help")
		if err != nil || strings.Contains(out, "phk_secret_in_env") || !strings.Contains(out, "PARTNERHUB_KEY") {
			t.Errorf("help: %v\n%s", err, out)
		}
	})
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "", want: ""},
		{in: "2026-11-19T08:00:00+01:00", want: "2026-11-19T07:00:00Z"},
		{in: "6h", want: "2026-11-20T06:00:00Z"},
		{in: "90m", want: "2026-11-20T10:30:00Z"},
		{in: "3d", want: "2026-11-17T12:00:00Z"},
		{in: "yesterday", bad: true},
		{in: "-2h", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSince(tt.in, now)
			if tt.bad {
				if err == nil {
					t.Errorf("parseSince = %q, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("parseSince = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
