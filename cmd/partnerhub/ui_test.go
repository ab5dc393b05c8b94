package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// flipReceiver answers 410 Gone (which disables the endpoint) until ok
// is set, then 204.
type flipReceiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	ok  bool
	got int
}

func newFlipReceiver(t *testing.T) *flipReceiver {
	r := &flipReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if !r.ok {
			http.Error(w, "gone for now", http.StatusGone)
			return
		}
		r.got++
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *flipReceiver) succeed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ok = true
}

func (r *flipReceiver) received() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got
}

// uiSeed is a hub with two partners, a conversion each, an endpoint that
// was disabled by a 410 with its deliveries failed, and a partner key.
type uiSeed struct {
	h          *hubUnderTest
	rcv        *flipReceiver
	sourceID   string
	endpointID string
	failedID   string // a failed delivery
	aliceKey   string // partner key of alice
	viewerKey  string
	bobConv    string // bob's conversion, which alice must never see
	aliceConv  string
}

func seedUI(t *testing.T) *uiSeed {
	t.Helper()
	h := startHub(t, testEnv(t), Options{})
	s := &uiSeed{h: h, rcv: newFlipReceiver(t)}
	if st := h.api("PATCH", "/program", map[string]any{"default_commission_bps": 1500, "hold_days": 0}, nil); st != 200 {
		t.Fatalf("patching program: %d", st)
	}
	partners := map[string]string{}
	for _, p := range []struct{ name, code string }{{"Alice Example", "alice"}, {"Bob Other", "bob"}} {
		var out map[string]any
		if st := h.api("POST", "/partners", map[string]any{"name": p.name, "code": p.code}, &out); st != 201 {
			t.Fatalf("creating partner %s: %d %v", p.code, st, out)
		}
		partners[p.code] = out["id"].(string)
	}
	secret := "whsec_test_" + randHex(8)
	var src map[string]any
	if st := h.api("POST", "/sources", map[string]any{"provider": "stripe", "name": "Stripe live", "secret": secret}, &src); st != 201 {
		t.Fatalf("creating source: %d %v", st, src)
	}
	s.sourceID = src["id"].(string)
	var ep map[string]any
	if st := h.api("POST", "/endpoints", map[string]any{"url": s.rcv.srv.URL + "/hooks", "description": "merchant automation"}, &ep); st != 201 {
		t.Fatalf("creating endpoint: %d %v", st, ep)
	}
	s.endpointID = ep["id"].(string)
	for i, ref := range []string{"alice", "bob"} {
		n := fmt.Sprint(i)
		if st, out := h.postStripe(s.sourceID, secret, checkoutCompleted("evt_ui_"+n, "cs_ui_"+n, "pi_ui_"+n, ref, 10000*int64(i+1), 0)); st != 200 {
			t.Fatalf("posting checkout for %s: %d %v", ref, st, out)
		}
	}
	convs := func() []map[string]any {
		var l struct{ Data []map[string]any }
		h.api("GET", "/conversions", nil, &l)
		return l.Data
	}
	waitFor(t, 30*time.Second, "two attributed conversions", func() bool {
		n := 0
		for _, c := range convs() {
			if c["partner_id"] != nil && c["partner_id"] != "" {
				n++
			}
		}
		return n == 2
	})
	for _, c := range convs() {
		switch c["partner_id"] {
		case partners["bob"]:
			s.bobConv = c["id"].(string)
		case partners["alice"]:
			s.aliceConv = c["id"].(string)
		}
	}
	waitFor(t, 30*time.Second, "a failed delivery on the disabled endpoint", func() bool {
		var l struct{ Data []map[string]any }
		h.api("GET", "/deliveries?status=failed&endpoint_id="+s.endpointID, nil, &l)
		if len(l.Data) == 0 {
			return false
		}
		s.failedID = l.Data[len(l.Data)-1]["id"].(string)
		var e map[string]any
		h.api("GET", "/endpoints/"+s.endpointID, nil, &e)
		return e["enabled"] == false
	})
	// The hold is 0 days: approve now rather than wait for the schedule.
	waitFor(t, 30*time.Second, "approved commissions", func() bool {
		if err := h.app.Service.Approve(context.Background()); err != nil {
			t.Fatalf("approving: %v", err)
		}
		var l struct{ Data []map[string]any }
		h.api("GET", "/commissions?status=approved", nil, &l)
		return len(l.Data) == 2
	})
	var key map[string]any
	if st := h.api("POST", "/api-keys", map[string]any{"name": "alice portal", "role": "partner", "partner_id": partners["alice"]}, &key); st != 201 {
		t.Fatalf("creating partner key: %d %v", st, key)
	}
	s.aliceKey = key["key"].(string)
	if st := h.api("POST", "/api-keys", map[string]any{"name": "viewer", "role": "viewer"}, &key); st != 201 {
		t.Fatalf("creating viewer key: %d %v", st, key)
	}
	s.viewerKey = key["key"].(string)
	return s
}

// browser is a cookie-keeping HTTP client that does not follow redirects.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newBrowser(t *testing.T, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, form url.Values) (int, string, http.Header) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.base+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(out), res.Header
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) login(key string) string {
	b.t.Helper()
	st, _, hdr := b.do("POST", "/ui/login", url.Values{"key": {key}})
	if st != http.StatusSeeOther {
		b.t.Fatalf("login answered %d", st)
	}
	loc := hdr.Get("Location")
	st, page, hdr := b.do("GET", loc, nil)
	if st == http.StatusFound {
		loc = hdr.Get("Location")
		_, page, _ = b.do("GET", loc, nil)
	}
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		b.t.Fatalf("no CSRF token on %s", loc)
	}
	return m[1]
}

func TestUIRolesAndScoping(t *testing.T) {
	s := seedUI(t)
	base := s.h.base

	t.Run("signed out", func(t *testing.T) {
		b := newBrowser(t, base)
		if st, _, hdr := b.do("GET", "/ui", nil); st != http.StatusFound || hdr.Get("Location") != "/ui/" {
			t.Errorf("GET /ui = %d %s", st, hdr.Get("Location"))
		}
		if st, _, hdr := b.do("GET", "/ui/deliveries", nil); st != http.StatusSeeOther || !strings.HasPrefix(hdr.Get("Location"), "/ui/login") {
			t.Errorf("GET /ui/deliveries signed out = %d %s", st, hdr.Get("Location"))
		}
		if st, page, _ := b.do("POST", "/ui/login", url.Values{"key": {"phk_wrong"}}); st != http.StatusUnauthorized || !strings.Contains(page, "not valid") {
			t.Errorf("bad key = %d", st)
		}
	})

	t.Run("admin sees every page", func(t *testing.T) {
		b := newBrowser(t, base)
		st, _, hdr := b.do("POST", "/ui/login", url.Values{"key": {testAdminKey}})
		ck := hdr.Get("Set-Cookie")
		if st != http.StatusSeeOther || !strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Strict") || strings.Contains(ck, "Secure") {
			t.Fatalf("login = %d, cookie %q", st, ck)
		}
		var inbound struct{ Data []map[string]any }
		s.h.api("GET", "/inbound-events", nil, &inbound)
		var payout map[string]any
		for _, tt := range []struct{ path, want string }{
			{"/ui/deliveries?status=failed", s.failedID},
			{"/ui/deliveries/" + s.failedID, "Retry delivery"},
			{"/ui/deliveries/bulk-retry?endpoint_id=" + s.endpointID, "will be retried"},
			{"/ui/endpoints", "410 Gone"},
			{"/ui/sources", "Send test event"},
			{"/ui/inbound", "checkout.session.completed"},
			{"/ui/inbound/" + inbound.Data[0]["id"].(string), "•••"},
			{"/ui/partners", "/r/alice"},
			{"/ui/conversions", s.bobConv},
			{"/ui/conversions/" + s.aliceConv, "earned"},
			{"/ui/rules", "default rate"},
			{"/ui/payouts", "Create payout run"},
			{"/ui/reports", "<svg"},
			{"/ui/reports/export.csv", "alice"},
		} {
			st, page, _ := b.do("GET", tt.path, nil)
			if st != http.StatusOK || !strings.Contains(page, tt.want) {
				t.Errorf("GET %s = %d, want 200 with %q", tt.path, st, tt.want)
			}
			if strings.Contains(page, "buyer@example.com") {
				t.Errorf("GET %s shows an email address", tt.path)
			}
		}
		if st := s.h.api("POST", "/payouts", nil, &payout); st != 201 {
			t.Fatalf("drafting payout: %d", st)
		}
		if st, page, _ := b.do("GET", "/ui/payouts/"+payout["id"].(string), nil); st != 200 || !strings.Contains(page, "Alice Example") {
			t.Errorf("payout page = %d", st)
		}
	})

	t.Run("form posts need the session's CSRF token", func(t *testing.T) {
		b := newBrowser(t, base)
		tok := b.login(testAdminKey)
		if st, _, _ := b.do("POST", "/ui/endpoints/"+s.endpointID+"/enable", url.Values{"csrf": {"forged"}}); st != http.StatusForbidden {
			t.Errorf("post with a forged token = %d, want 403", st)
		}
		if st, _, _ := b.do("POST", "/ui/logout", url.Values{"csrf": {tok}}); st != http.StatusSeeOther {
			t.Errorf("logout = %d", st)
		}
		if st, _, _ := b.do("GET", "/ui/deliveries", nil); st != http.StatusSeeOther {
			t.Errorf("after logout GET /ui/deliveries = %d, want a redirect to the login", st)
		}
	})

	t.Run("viewer has no buttons and the API refuses", func(t *testing.T) {
		b := newBrowser(t, base)
		tok := b.login(s.viewerKey)
		_, page, _ := b.do("GET", "/ui/deliveries/"+s.failedID, nil)
		if strings.Contains(page, "Retry delivery") || !strings.Contains(page, "viewer") {
			t.Errorf("viewer's delivery page offers a retry")
		}
		b.do("POST", "/ui/deliveries/"+s.failedID+"/retry", url.Values{"csrf": {tok}})
		_, page, _ = b.do("GET", "/ui/deliveries/"+s.failedID, nil)
		if !strings.Contains(page, "Your role may not do this") {
			t.Errorf("a viewer's retry was not refused")
		}
	})

	t.Run("partner sees only its own", func(t *testing.T) {
		b := newBrowser(t, base)
		b.login(s.aliceKey)
		st, page, _ := b.do("GET", "/ui/portal", nil)
		if st != 200 || !strings.Contains(page, "https://hub.example.com/r/alice") || !strings.Contains(page, s.aliceConv) {
			t.Errorf("portal = %d, lacks alice's link or conversion", st)
		}
		if strings.Contains(page, "bob") || strings.Contains(page, s.bobConv) {
			t.Errorf("portal shows bob's data")
		}
		for _, p := range []string{"/ui/deliveries", "/ui/partners", "/ui/payouts", "/ui/conversions/" + s.bobConv} {
			st, page, _ := b.do("GET", p, nil)
			if st == 200 || strings.Contains(page, s.bobConv+"</") || strings.Contains(page, "Bob Other") {
				t.Errorf("partner GET %s = %d", p, st)
			}
		}
	})
}
