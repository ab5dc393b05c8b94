package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/partnerhub/partnerhub/outbound"
)

func TestListenVerifies(t *testing.T) {
	secret := outbound.NewSecret()
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	body := []byte(`{"id":"evt_1","type":"commission.created","data":{}}`)
	sign := func(s string, ts time.Time) string {
		v, err := outbound.Sign([]string{s}, "evt_1", ts, body)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		name string
		sig  string
		ts   time.Time
		want int
		out  string
	}{
		{"valid", sign(secret, now), now, http.StatusNoContent, "signature verified"},
		{"rotation: any signature may match", sign(outbound.NewSecret(), now) + " " + sign(secret, now), now, http.StatusNoContent, "signature verified"},
		{"other secret", sign(outbound.NewSecret(), now), now, http.StatusUnauthorized, "no signature matches"},
		{"stale timestamp", sign(secret, now.Add(-10*time.Minute)), now.Add(-10 * time.Minute), http.StatusUnauthorized, "tolerance"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
			req.Header.Set("webhook-id", "evt_1")
			req.Header.Set("webhook-timestamp", strconv.FormatInt(c.ts.Unix(), 10))
			req.Header.Set("webhook-signature", c.sig)
			rec := httptest.NewRecorder()
			listenHandler(secret, &out, func() time.Time { return now }).ServeHTTP(rec, req)
			if rec.Code != c.want || !strings.Contains(out.String(), c.out) {
				t.Fatalf("got %d %q, want %d and output containing %q", rec.Code, out.String(), c.want, c.out)
			}
		})
	}
}
