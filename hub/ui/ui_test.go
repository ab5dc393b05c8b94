package ui

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func TestMaskBody(t *testing.T) {
	tests := []struct {
		name, body, enc string
		want            []string
		hidden          []string
	}{
		{
			name: "json personal data and secrets",
			body: `{"id":"evt_1","customer_details":{"email":"buyer@example.com","name":"Ada Lovelace","phone":"+44 20 7946 0000",
"address":{"line1":"1 Main St","city":"London"}},"amount_total":1000,"metadata":{"note":"mail ada@example.org please"},"api_key":"sk_live_x"}`,
			want:   []string{`"id": "evt_1"`, `"amount_total": 1000`, `"email": "•••"`, `"address": {`, "mail ••• please"},
			hidden: []string{"buyer@example.com", "Ada Lovelace", "7946", "Main St", "London", "ada@example.org", "sk_live_x"},
		},
		{
			name:   "base64 form data",
			body:   base64.StdEncoding.EncodeToString([]byte("alert_name=payment_succeeded&email=a%40b.example&passthrough=%7B%22ref%22%3A%22alice%22%2C%22email%22%3A%22x%40y.example%22%7D&sale_gross=10.00")),
			enc:    "base64",
			want:   []string{"sale_gross = 10.00", "email = •••", `"ref":"alice"`},
			hidden: []string{"a@b.example", "x@y.example", "payment_succeeded"},
		},
		{
			name:   "neither json nor form",
			body:   "<xml><email>a@b.example</email></xml>",
			want:   []string{"not shown"},
			hidden: []string{"a@b.example"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := maskBody(tt.body, tt.enc)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("masked body lacks %q:\n%s", w, got)
				}
			}
			for _, h := range tt.hidden {
				if strings.Contains(got, h) {
					t.Errorf("masked body shows %q:\n%s", h, got)
				}
			}
		})
	}
}

func TestSessionsExpireWhenIdle(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	ss := newSessions(8*time.Hour, func() time.Time { return now })
	id := ss.create(&session{key: "k", role: roleAdmin})
	if s := ss.get(id, true); s == nil || s.csrf == "" {
		t.Fatal("new session not found or without a CSRF token")
	}
	now = now.Add(7 * time.Hour)
	if ss.get(id, false) == nil {
		t.Fatal("session expired before 8 h idle")
	}
	now = now.Add(2 * time.Hour) // 9 h since the last touch: polls do not count
	if ss.get(id, false) != nil {
		t.Fatal("session alive after 9 h idle")
	}
	if ss.get("nope", true) != nil || ss.get("", true) != nil {
		t.Fatal("unknown cookie found a session")
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/deliveries?status=failed": "/ui/deliveries?status=failed",
		"https://evil.example/ui/":     "/ui/",
		"//evil.example/ui/":           "/ui/",
		"/ui/\\evil":                   "/ui/",
		"":                             "/ui/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReportCharts(t *testing.T) {
	rows := []reportRow{
		{PartnerName: "Alice", PartnerCode: "alice", Clicks: 10, Currencies: []reportCurrency{{Currency: "JPY", Conversions: 2, RevenueMinor: 5000}}},
		{PartnerName: "Bob", PartnerCode: "bob", Clicks: 5, Currencies: []reportCurrency{{Currency: "USD", Conversions: 1, RevenueMinor: 1999}}},
	}
	rows[0].Currencies[0].Commissions.PaidMinor = 750
	cs := reportCharts(rows)
	var titles []string
	for _, c := range cs {
		titles = append(titles, c.Title)
	}
	want := "Clicks|Conversions (JPY)|Revenue (JPY)|Commissions by status (JPY)|Conversions (USD)|Revenue (USD)|Commissions by status (USD)"
	if got := strings.Join(titles, "|"); got != want {
		t.Fatalf("charts = %s, want %s", got, want)
	}
	if b := cs[0].Bars; b[0].W != chartBarArea || b[1].W != chartBarArea/2 {
		t.Errorf("click bars %d and %d wide, want %d and %d", b[0].W, b[1].W, chartBarArea, chartBarArea/2)
	}
	if v := cs[2].Bars[0].Value; v != "5000 JPY" {
		t.Errorf("JPY revenue = %q, want 5000 JPY (no minor digits)", v)
	}
	if v := cs[5].Bars[0].Value; v != "19.99 USD" {
		t.Errorf("USD revenue = %q", v)
	}
}

func TestPagesParse(t *testing.T) {
	ps := mustParsePages()
	for _, name := range []string{"login", "message", "deliveries", "delivery", "bulk_retry", "endpoints", "sources",
		"inbound", "inbound_detail", "partners", "conversions", "conversion", "rules", "payouts", "payout", "reports", "portal"} {
		if ps[name] == nil {
			t.Errorf("no page %q", name)
		}
	}
}
