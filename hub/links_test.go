package hub_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/labstack/echo/v4"
	"go.uber.org/goleak"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
)

var testIPKey = []byte("0123456789abcdef0123456789abcdef")

const (
	testDest = "https://shop.example.com/landing?utm_source=partner&b=2"
	testIP   = "203.0.113.7"
	testUA   = "Mozilla/5.0 (X11; Linux x86_64) partnerhub-test-agent/1.0"
)

var clickIDRE = regexp.MustCompile(`^clk_[0-9a-z]{26}$`)

// countingStore wraps a store, counting InsertClicks calls; it can fail
// the first ones.
type countingStore struct {
	*store.DB
	mu      sync.Mutex
	inserts int
	rows    int
	failN   int
	gate    chan struct{} // when set, InsertClicks waits until it is closed
}

func (s *countingStore) InsertClicks(ctx context.Context, cs []*hub.Click) error {
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	s.inserts++
	if s.failN > 0 {
		s.failN--
		s.mu.Unlock()
		return fmt.Errorf("inserting clicks: %w", hub.ErrUnavailable)
	}
	s.rows += len(cs)
	s.mu.Unlock()
	return s.DB.InsertClicks(ctx, cs)
}

func (s *countingStore) counts() (inserts, rows int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inserts, s.rows
}

// linksFixture is a migrated store with a program destination and two
// partners.
type linksFixture struct {
	db       *store.DB
	st       *countingStore
	ada, bob *hub.Partner
}

func newLinksFixture(t testing.TB, db *store.DB, settings hub.ProgramSettings) *linksFixture {
	t.Helper()
	ctx := context.Background()
	prog, err := db.GetProgram(ctx, hub.DefaultProgramID)
	if err != nil {
		t.Fatal(err)
	}
	prog.ProgramSettings = settings
	if err := db.UpdateProgram(ctx, prog); err != nil {
		t.Fatal(err)
	}
	f := &linksFixture{db: db, st: &countingStore{DB: db}}
	f.ada = &hub.Partner{Name: "Ada", Code: "AdaLove"}
	f.bob = &hub.Partner{Name: "Bob", Code: "bob-b"}
	for _, p := range []*hub.Partner{f.ada, f.bob} {
		if err := db.CreatePartner(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func defaultSettings() hub.ProgramSettings {
	return hub.ProgramSettings{
		CookieDays:     30,
		DestinationURL: testDest,
		AllowedHosts:   []string{"checkout.example.net", "*.example.org"},
	}
}

func (f *linksFixture) links(t testing.TB, cfg hub.LinksConfig) (*hub.Links, *echo.Echo) {
	t.Helper()
	if cfg.IPKey == nil {
		cfg.IPKey = testIPKey
	}
	l, err := hub.NewLinks(cfg, f.st)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.HTTPErrorHandler = hub.ErrorHandler
	l.Mount(e)
	return l, e
}

func click(e *echo.Echo, target string, mod func(*http.Request)) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.RemoteAddr = testIP + ":51234"
	req.Header.Set("User-Agent", testUA)
	req.Header.Set("Referer", "https://blog.example/post")
	if mod != nil {
		mod(req)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

// allClicks pages through every click of the default program.
func allClicks(t testing.TB, db *store.DB) []*hub.Click {
	t.Helper()
	var out []*hub.Click
	p := hub.Page{Limit: 200}
	for {
		cs, err := db.ListClicks(context.Background(), hub.DefaultProgramID, hub.Filter{}, p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, cs...)
		if len(cs) < p.Limit {
			return out
		}
		p.Cursor = cs[len(cs)-1].ID
	}
}

func closeLinks(t testing.TB, l *hub.Links) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestReferralRedirect(t *testing.T) {
	f := newLinksFixture(t, storetest.Open(t), defaultSettings())
	l, e := f.links(t, hub.LinksConfig{})
	defer closeLinks(t, l)

	def := testDest + "&partnerhub_click="
	tests := []struct {
		name, path, want string
	}{
		{"program destination keeps its query", "/r/AdaLove", def},
		{"code is case-insensitive", "/r/adalove", def},
		{"to on the destination host", "/r/AdaLove?to=" + url.QueryEscape("https://shop.example.com/pricing?plan=pro&x=a%20b#top"),
			"https://shop.example.com/pricing?plan=pro&x=a%20b&partnerhub_click=#top"},
		{"to on an allowed host", "/r/AdaLove?to=" + url.QueryEscape("https://checkout.example.net/buy"),
			"https://checkout.example.net/buy?partnerhub_click="},
		{"to on an allowed subdomain", "/r/AdaLove?to=" + url.QueryEscape("http://a.b.example.org/"),
			"http://a.b.example.org/?partnerhub_click="},
		{"stale click id replaced", "/r/AdaLove?to=" + url.QueryEscape("https://shop.example.com/?partnerhub_click=clk_old&a=1"),
			"https://shop.example.com/?a=1&partnerhub_click="},
		{"open redirect: other host", "/r/AdaLove?to=" + url.QueryEscape("https://evil.example/"), def},
		{"open redirect: upper case other host", "/r/AdaLove?to=" + url.QueryEscape("HTTPS://EVIL.EXAMPLE/"), def},
		{"open redirect: scheme-relative", "/r/AdaLove?to=" + url.QueryEscape("//evil.example"), def},
		{"open redirect: javascript", "/r/AdaLove?to=" + url.QueryEscape("javascript:alert(document.cookie)"), def},
		{"open redirect: data", "/r/AdaLove?to=" + url.QueryEscape("data:text/html,<script>alert(1)</script>"), def},
		{"open redirect: user info", "/r/AdaLove?to=" + url.QueryEscape("https://shop.example.com@evil.example/"), def},
		{"open redirect: backslashes", "/r/AdaLove?to=" + url.QueryEscape(`https:\\evil.example`), def},
		{"open redirect: backslash host", "/r/AdaLove?to=" + url.QueryEscape(`https://evil.example\.shop.example.com/`), def},
		{"open redirect: suffix host", "/r/AdaLove?to=" + url.QueryEscape("https://shop.example.com.evil.example/"), def},
		{"open redirect: apex of wildcard", "/r/AdaLove?to=" + url.QueryEscape("https://example.org.evil.example/"), def},
		{"open redirect: relative path", "/r/AdaLove?to=" + url.QueryEscape("/somewhere"), def},
		{"open redirect: tab in host", "/r/AdaLove?to=" + url.QueryEscape("https://evil.example\t.shop.example.com/"), def},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := click(e, tt.path, nil)
			if rec.Code != http.StatusFound {
				t.Fatalf("status = %d, want 302; body %q", rec.Code, rec.Body.String())
			}
			loc := rec.Header().Get("Location")
			u, err := url.Parse(loc)
			if err != nil {
				t.Fatalf("Location %q: %v", loc, err)
			}
			id := u.Query().Get("partnerhub_click")
			if !clickIDRE.MatchString(id) {
				t.Fatalf("Location %q: partnerhub_click = %q, want a click id", loc, id)
			}
			if got := strings.Replace(loc, id, "", 1); got != tt.want {
				t.Errorf("Location = %q\nwant       %q (with the click id)", loc, tt.want)
			}
			var cookie string
			for _, c := range rec.Result().Cookies() {
				if c.Name == "ph_click" {
					cookie = c.Value
				}
			}
			if cookie != id {
				t.Errorf("ph_click cookie = %q, want the click id %q", cookie, id)
			}
		})
	}
}

func TestReferralCookies(t *testing.T) {
	f := newLinksFixture(t, storetest.Open(t), defaultSettings())
	l, e := f.links(t, hub.LinksConfig{})
	defer closeLinks(t, l)

	tests := []struct {
		name       string
		mod        func(*http.Request)
		wantSecure bool
	}{
		{"http", nil, false},
		{"https behind a proxy", func(r *http.Request) { r.Header.Set("X-Forwarded-Proto", "https") }, true},
		{"https behind a private proxy", func(r *http.Request) {
			r.RemoteAddr = "10.0.0.2:3000"
			r.Header.Set("X-Forwarded-Proto", "https")
		}, true},
		{"https", func(r *http.Request) { r.TLS = &tls.ConnectionState{} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := click(e, "/r/AdaLove", tt.mod)
			got := map[string]*http.Cookie{}
			for _, c := range rec.Result().Cookies() {
				got[c.Name] = c
			}
			for name, httpOnly := range map[string]bool{"ph_click": false, "ph_vid": true} {
				c := got[name]
				if c == nil {
					t.Fatalf("no %s cookie in %q", name, rec.Header().Values("Set-Cookie"))
				}
				if c.MaxAge != 30*86400 || c.Path != "/" || c.HttpOnly != httpOnly || c.Secure != tt.wantSecure || c.SameSite != http.SameSiteLaxMode {
					t.Errorf("%s cookie = %s; want Max-Age=%d Path=/ HttpOnly=%v Secure=%v SameSite=Lax",
						name, c, 30*86400, httpOnly, tt.wantSecure)
				}
			}
			if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
		})
	}

	t.Run("visitor cookie kept", func(t *testing.T) {
		rec := click(e, "/r/bob-b", func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: "ph_vid", Value: "vis_returning-visitor-1"})
		})
		for _, c := range rec.Result().Cookies() {
			if c.Name == "ph_vid" && c.Value != "vis_returning-visitor-1" {
				t.Errorf("ph_vid = %q, want the visitor's own", c.Value)
			}
		}
	})
	t.Run("malformed visitor cookie replaced", func(t *testing.T) {
		rec := click(e, "/r/bob-b", func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: "ph_vid", Value: "x"})
		})
		for _, c := range rec.Result().Cookies() {
			if c.Name == "ph_vid" && (c.Value == "x" || len(c.Value) < 16) {
				t.Errorf("ph_vid = %q, want a new visitor id", c.Value)
			}
		}
	})
	t.Run("default cookie window", func(t *testing.T) {
		g := newLinksFixture(t, storetest.Open(t), hub.ProgramSettings{DestinationURL: testDest})
		l, e := g.links(t, hub.LinksConfig{CookieName: "my_click", CookieDomain: "example.com"})
		defer closeLinks(t, l)
		rec := click(e, "/r/AdaLove", nil)
		var c *http.Cookie
		for _, x := range rec.Result().Cookies() {
			if x.Name == "my_click" {
				c = x
			}
		}
		if c == nil || c.MaxAge != 60*86400 || c.Domain != "example.com" {
			t.Errorf("click cookie = %v, want my_click with Max-Age=%d Domain=example.com", c, 60*86400)
		}
	})
}

func TestReferralNotFound(t *testing.T) {
	db := storetest.Open(t)
	f := newLinksFixture(t, db, hub.ProgramSettings{})
	l, e := f.links(t, hub.LinksConfig{CacheTTL: -1})
	defer closeLinks(t, l)

	tests := []struct {
		name, path, wantBody string
	}{
		{"unknown code", "/r/nobody", "not found"},
		{"malformed code", "/r/" + url.PathEscape("a b<script>"), "not found"},
		{"no destination configured", "/r/AdaLove", "no destination URL"},
		{"to without destination, host not allowed", "/r/AdaLove?to=" + url.QueryEscape("https://evil.example/"), "no destination URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := click(e, tt.path, nil)
			if rec.Code != http.StatusNotFound {
				t.Errorf("status = %d, want 404", rec.Code)
			}
			if loc := rec.Header().Get("Location"); loc != "" {
				t.Errorf("Location = %q, want none", loc)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type = %q, want text/plain", ct)
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("body = %q, want it to say %q", rec.Body.String(), tt.wantBody)
			}
			if len(rec.Result().Cookies()) != 0 {
				t.Errorf("cookies set: %v", rec.Result().Cookies())
			}
		})
	}
	closeLinks(t, l)
	if n := len(allClicks(t, db)); n != 0 {
		t.Errorf("%d clicks recorded, want 0", n)
	}
}

func TestReferralPartnerOfAnotherProgram(t *testing.T) {
	db := storetest.Open(t)
	f := newLinksFixture(t, db, defaultSettings())
	ctx := context.Background()
	if _, err := db.SQL().ExecContext(ctx, `INSERT INTO programs (id, name, default_commission_bps, hold_days, created_at, updated_at, settings)
		SELECT 'prg_other', 'Other', default_commission_bps, hold_days, created_at, updated_at, settings FROM programs WHERE id = 'prg_default'`); err != nil {
		t.Fatal(err)
	}
	prog, err := db.GetProgram(ctx, "prg_other")
	if err != nil {
		t.Fatal(err)
	}
	prog.ProgramSettings = hub.ProgramSettings{CookieDays: 7, DestinationURL: "https://other.example/"}
	if err := db.UpdateProgram(ctx, prog); err != nil {
		t.Fatal(err)
	}
	cy := &hub.Partner{ProgramID: "prg_other", Name: "Cy", Code: "cy-only"}
	twin := &hub.Partner{ProgramID: "prg_other", Name: "Ada's twin", Code: "adalove"}
	for _, p := range []*hub.Partner{cy, twin} {
		if err := db.CreatePartner(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	l, e := f.links(t, hub.LinksConfig{})

	tests := []struct {
		name, code, wantLoc string
		wantMaxAge          int
	}{
		{"partner of another program", "CY-ONLY", "https://other.example/?partnerhub_click=", 7 * 86400},
		{"the default program wins a shared code", "adalove", testDest + "&partnerhub_click=", 30 * 86400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := click(e, "/r/"+tt.code, nil)
			loc := rec.Header().Get("Location")
			if !strings.HasPrefix(loc, tt.wantLoc) {
				t.Errorf("Location = %q, want %q + id", loc, tt.wantLoc)
			}
			for _, c := range rec.Result().Cookies() {
				if c.Name == "ph_click" && c.MaxAge != tt.wantMaxAge {
					t.Errorf("Max-Age = %d, want %d", c.MaxAge, tt.wantMaxAge)
				}
			}
		})
	}
	closeLinks(t, l)
	cs, err := db.ListClicks(ctx, "prg_other", hub.Filter{}, hub.Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].PartnerID != cy.ID {
		t.Errorf("clicks of prg_other = %d, want Cy's one", len(cs))
	}
	if _, err := db.FindPartnerByCode(ctx, "prg_nothere", "cy-only"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("FindPartnerByCode(other program) err = %v, want ErrNotFound", err)
	}
}

func TestClickRecorded(t *testing.T) {
	db := storetest.Open(t)
	f := newLinksFixture(t, db, defaultSettings())
	now := time.Date(2026, 11, 2, 10, 30, 0, 0, time.UTC)
	l, e := f.links(t, hub.LinksConfig{Now: func() time.Time { return now }})

	rec := click(e, "/r/AdaLove?to="+url.QueryEscape("https://shop.example.com/p?x=1"), func(r *http.Request) {
		r.Host = "go.example.com"
		r.AddCookie(&http.Cookie{Name: "ph_vid", Value: "vis_returning-visitor-1"})
	})
	click(e, "/r/bob-b", func(r *http.Request) { r.RemoteAddr = "198.51.100.9:4000" })
	click(e, "/r/bob-b", nil)
	closeLinks(t, l)

	id := mustParse(t, rec.Header().Get("Location")).Query().Get("partnerhub_click")
	cs := allClicks(t, db)
	if len(cs) != 3 {
		t.Fatalf("%d clicks, want 3", len(cs))
	}
	var got *hub.Click
	for _, c := range cs {
		if c.ID == id {
			got = c
		}
	}
	if got == nil {
		t.Fatalf("click %s not stored", id)
	}
	want := &hub.Click{
		ID: id, ProgramID: hub.DefaultProgramID, PartnerID: f.ada.ID, VisitorID: "vis_returning-visitor-1",
		LandingURL:  "http://go.example.com/r/AdaLove?to=https%3A%2F%2Fshop.example.com%2Fp%3Fx%3D1",
		Destination: "https://shop.example.com/p?x=1",
		Referrer:    "https://blog.example/post",
		IPHash:      got.IPHash, UAHash: got.UAHash, CreatedAt: now,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("stored click (-want +got):\n%s", d)
	}

	t.Run("IP and user agent never in clear", func(t *testing.T) {
		hex64 := regexp.MustCompile(`^[0-9a-f]{64}$`)
		for _, c := range cs {
			b, _ := json.Marshal(c)
			for _, secret := range []string{testIP, "198.51.100.9", "partnerhub-test-agent", "Mozilla"} {
				if strings.Contains(string(b), secret) {
					t.Errorf("click %s stores %q in clear: %s", c.ID, secret, b)
				}
			}
			if !hex64.MatchString(c.IPHash) || !hex64.MatchString(c.UAHash) {
				t.Errorf("hashes = %q, %q; want HMAC-SHA256 hex", c.IPHash, c.UAHash)
			}
		}
	})
	t.Run("hashes are stable and keyed", func(t *testing.T) {
		byIP := map[string]int{}
		for _, c := range cs {
			byIP[c.IPHash]++
		}
		if len(byIP) != 2 {
			t.Errorf("%d distinct IP hashes for 2 addresses", len(byIP))
		}
		if cs[0].UAHash != cs[1].UAHash {
			t.Errorf("one user agent hashed to two values")
		}
	})
}

func mustParse(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestClicksWrittenInBatches(t *testing.T) {
	db := storetest.Open(t)
	f := newLinksFixture(t, db, defaultSettings())
	l, e := f.links(t, hub.LinksConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- l.Run(ctx) }()

	const total, workers = 1000, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range total / workers {
				code := []string{"AdaLove", "bob-b"}[(w+i)%2]
				if rec := click(e, "/r/"+code, nil); rec.Code != http.StatusFound {
					t.Errorf("status %d", rec.Code)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	inserts, rows := f.st.counts()
	if n := len(allClicks(t, db)); n != total || rows != total {
		t.Errorf("%d clicks stored (%d rows inserted), want %d", n, rows, total)
	}
	if inserts > total/50 {
		t.Errorf("%d INSERT statements for %d clicks, want batches (at most %d)", inserts, total, total/50)
	}
	t.Logf("%d clicks in %d INSERT statements", total, inserts)
}

func TestRedirectDoesNotWaitForTheDatabase(t *testing.T) {
	db := storetest.Open(t)
	f := newLinksFixture(t, db, defaultSettings())
	f.st.gate = make(chan struct{})
	l, e := f.links(t, hub.LinksConfig{FlushEvery: time.Millisecond, BatchSize: 10})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- l.Run(ctx) }()

	// The writer is stuck in its first INSERT; redirects go on.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			if rec := click(e, "/r/AdaLove", nil); rec.Code != http.StatusFound {
				t.Errorf("status %d", rec.Code)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("redirects waited for the database")
	}
	close(f.st.gate)
	closeLinks(t, l)
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	if n := len(allClicks(t, db)); n != 200 {
		t.Errorf("%d clicks stored, want 200", n)
	}
}

func TestClicksNotLostOnClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	tests := []struct {
		name  string
		cfg   hub.LinksConfig
		run   bool
		failN int
	}{
		{"writer running, long flush interval", hub.LinksConfig{FlushEvery: time.Hour}, true, 0},
		{"writer never started", hub.LinksConfig{}, false, 0},
		{"buffer full: written by the request", hub.LinksConfig{Buffer: 10, FlushEvery: time.Hour}, false, 0},
		{"small batches", hub.LinksConfig{BatchSize: 7, FlushEvery: time.Hour}, true, 0},
		{"database fails once", hub.LinksConfig{FlushEvery: time.Hour}, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := storetest.Open(t)
			f := newLinksFixture(t, db, defaultSettings())
			f.st.failN = tt.failN
			l, e := f.links(t, tt.cfg)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			runErr := make(chan error, 1)
			if tt.run {
				go func() { runErr <- l.Run(ctx) }()
			} else {
				runErr <- nil
			}
			const n = 123
			for range n {
				click(e, "/r/AdaLove", nil)
			}
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := <-runErr; err != nil {
				t.Fatalf("Run: %v", err)
			}
			// After Close, a click is written by its own request.
			click(e, "/r/AdaLove", nil)
			if got := len(allClicks(t, db)); got != n+1 {
				t.Errorf("%d clicks stored, want %d", got, n+1)
			}
			if err := l.Run(ctx); err != nil {
				t.Errorf("Run after Close: %v, want nil at once", err)
			}
		})
	}
}

func TestClicksAPI(t *testing.T) {
	db := storetest.Open(t)
	f := newLinksFixture(t, db, defaultSettings())
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	l, e := f.links(t, hub.LinksConfig{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	for i, code := range []string{"AdaLove", "bob-b", "AdaLove", "AdaLove"} {
		mu.Lock()
		now = time.Date(2026, 11, 1+i, 0, 0, 0, 0, time.UTC)
		mu.Unlock()
		click(e, "/r/"+code, nil)
	}
	closeLinks(t, l)

	const key = "phk_test_links_key"
	g := e.Group("/api/v1", hub.Auth(db, &hub.APIKey{ID: "key_test", ProgramID: hub.DefaultProgramID,
		Role: hub.RoleViewer, Hash: hub.HashKey(key)}))
	l.MountAPI(g)

	get := func(t *testing.T, path string) (int, hub.List[*hub.Click]) {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		var out hub.List[*hub.Click]
		if rec.Code == http.StatusOK {
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatal(err)
			}
		}
		return rec.Code, out
	}
	tests := []struct {
		name       string
		query      string
		wantStatus int
		wantN      int
		wantMore   bool
	}{
		{"all", "", 200, 4, false},
		{"one partner", "?partner_id=" + f.ada.ID, 200, 3, false},
		{"since", "?since=2026-11-02T00:00:00Z", 200, 3, false},
		{"since and until", "?since=2026-11-02T00:00:00Z&until=2026-11-04T00:00:00Z", 200, 2, false},
		{"page", "?limit=2", 200, 2, true},
		{"bad time", "?since=yesterday", 422, 0, false},
		{"bad limit", "?limit=0", 422, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := get(t, "/api/v1/clicks"+tt.query)
			if code != tt.wantStatus {
				t.Fatalf("status = %d, want %d", code, tt.wantStatus)
			}
			if len(out.Data) != tt.wantN || (out.NextCursor != "") != tt.wantMore {
				t.Errorf("got %d clicks, next_cursor %q; want %d, more %v", len(out.Data), out.NextCursor, tt.wantN, tt.wantMore)
			}
		})
	}
	t.Run("cursor", func(t *testing.T) {
		_, first := get(t, "/api/v1/clicks?limit=3")
		_, rest := get(t, "/api/v1/clicks?limit=3&cursor="+first.NextCursor)
		if len(rest.Data) != 1 || rest.Data[0].ID == first.Data[2].ID {
			t.Errorf("second page = %d clicks, want the 1 remaining", len(rest.Data))
		}
	})
	t.Run("unauthenticated", func(t *testing.T) {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/clicks", nil))
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("status = %d, want 401", rec.Code)
		}
	})
}

func TestTrackerScript(t *testing.T) {
	tests := []struct {
		name     string
		settings hub.ProgramSettings
		cfg      hub.LinksConfig
		want     []string
	}{
		{"program cookie window", defaultSettings(), hub.LinksConfig{}, []string{`/*ph:cookie_days*/30;`, `/*ph:cookie_name*/"ph_click";`}},
		{"defaults", hub.ProgramSettings{}, hub.LinksConfig{CookieName: "shop_click"}, []string{`/*ph:cookie_days*/60;`, `/*ph:cookie_name*/"shop_click";`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newLinksFixture(t, storetest.Open(t), tt.settings)
			l, e := f.links(t, tt.cfg)
			defer closeLinks(t, l)
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/t.js", nil))
			res := rec.Result()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != 200 {
				t.Fatalf("status = %d", res.StatusCode)
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/javascript") {
				t.Errorf("Content-Type = %q", ct)
			}
			if cc := res.Header.Get("Cache-Control"); cc != "public, max-age=3600" {
				t.Errorf("Cache-Control = %q", cc)
			}
			if len(body) > 8<<10 {
				t.Errorf("t.js is %d bytes, want a few KB", len(body))
			}
			for _, w := range tt.want {
				if !strings.Contains(string(body), w) {
					t.Errorf("t.js lacks %q", w)
				}
			}
		})
	}
}

func TestNewLinksValidates(t *testing.T) {
	db := storetest.Open(t)
	tests := []struct {
		name string
		cfg  hub.LinksConfig
		want string
	}{
		{"no IP key", hub.LinksConfig{}, "IPKey"},
		{"short IP key", hub.LinksConfig{IPKey: []byte("short")}, "IPKey"},
		{"huge batch", hub.LinksConfig{IPKey: testIPKey, BatchSize: 100000}, "BatchSize"},
		{"bad cookie name", hub.LinksConfig{IPKey: testIPKey, CookieName: "a b"}, "CookieName"},
		{"same cookie names", hub.LinksConfig{IPKey: testIPKey, CookieName: "x", VisitorCookie: "x"}, "CookieName"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := hub.NewLinks(tt.cfg, db)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one naming %s", err, tt.want)
			}
		})
	}
	if len(hub.DeriveClickKey("s")) != 32 || string(hub.DeriveClickKey("s")) == string(hub.DeriveClickKey("t")) {
		t.Errorf("DeriveClickKey does not derive distinct 32-byte keys")
	}
}

// BenchmarkRedirect measures GET /r/{code} with the batch writer running
// on SQLite; rows are written in the background as they would be in
// production.
func BenchmarkRedirect(b *testing.B) {
	db := storetest.OpenSQLite(b)
	f := newLinksFixture(b, db, defaultSettings())
	l, e := f.links(b, hub.LinksConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- l.Run(ctx) }()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if rec := click(e, "/r/AdaLove", nil); rec.Code != http.StatusFound {
				b.Errorf("status %d", rec.Code)
				return
			}
		}
	})
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	<-runErr
	inserts, rows := f.st.counts()
	b.ReportMetric(float64(rows)/float64(max(inserts, 1)), "rows/insert")
}
