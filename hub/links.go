package hub

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	_ "embed" // t.js
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
)

// LinksConfig configures referral links. Every zero value means the
// default its comment names.
type LinksConfig struct {
	// CookieName is the first-party cookie holding the click id; t.js
	// reads it, so it is not HttpOnly. Zero: "ph_click".
	CookieName string
	// VisitorCookie is the HttpOnly cookie naming the browser, so several
	// clicks of one visitor can be found. Zero: "ph_vid".
	VisitorCookie string
	// CookieDomain is the Domain attribute of both cookies, e.g.
	// "example.com" when the hub answers on go.example.com and the shop is
	// www.example.com. Zero: host-only cookies.
	CookieDomain string
	// FlushEvery is the longest a click waits in memory before it is
	// written. Zero: 200ms.
	FlushEvery time.Duration
	// BatchSize is the most clicks written by one INSERT. Zero: 500; at
	// most 2000.
	BatchSize int
	// Buffer is how many clicks may wait in memory; when it is full a
	// click is written by its own request instead of being dropped. Zero:
	// 20 × BatchSize.
	Buffer int
	// IPKey keys the HMAC-SHA256 hashes of the visitor's IP address and
	// user agent, so neither is stored in clear. Required: at least 16
	// bytes (see DeriveClickKey).
	IPKey []byte
	// CacheTTL is how long partner, program and unknown-code lookups are
	// kept in memory, so a click costs no database read. Zero: 10s;
	// negative: no cache.
	CacheTTL time.Duration
	// Logger receives write failures. Zero: slog.Default().
	Logger *slog.Logger
	// Now is the clock. Zero: time.Now.
	Now func() time.Time
}

// LinksStore is what referral links need from the store; *store.DB
// implements it.
type LinksStore interface {
	ClickStore
	GetProgram(ctx context.Context, id string) (*Program, error)
	// FindPartnerByCode matches codes case-insensitively; programID ""
	// searches every program, the default program first.
	FindPartnerByCode(ctx context.Context, programID, code string) (*Partner, error)
}

// Links serves referral links (GET /r/{code}), the checkout script (GET
// /t.js) and the clicks API. Clicks are queued in memory and written in
// batches by Run; Close writes what is left.
type Links struct {
	cfg LinksConfig
	st  LinksStore
	log *slog.Logger

	partners *ttlCache[*Partner]
	programs *ttlCache[*Program]

	clicks  chan *Click
	mu      sync.RWMutex // guards closed against sends to clicks
	closed  bool
	started atomic.Bool
	stop    chan struct{}
	stopped sync.Once
	done    chan struct{}
	err     error // of the final flush, read after done
}

// ClickParam is the query parameter carrying the click id to the merchant's
// site.
const ClickParam = "partnerhub_click"

const maxBatch = 2000

// DeriveClickKey derives LinksConfig.IPKey from the deployment's secret
// key (PARTNERHUB_SECRET_KEY), so click hashes stay stable across
// restarts and replicas.
func DeriveClickKey(secret string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("partnerhub click hash key v1"))
	return m.Sum(nil)
}

var cookieNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// NewLinks applies cfg's defaults and validates it.
func NewLinks(cfg LinksConfig, st LinksStore) (*Links, error) {
	if cfg.CookieName == "" {
		cfg.CookieName = "ph_click"
	}
	if cfg.VisitorCookie == "" {
		cfg.VisitorCookie = "ph_vid"
	}
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = 200 * time.Millisecond
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 20 * cfg.BatchSize
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var errs []error
	if st == nil {
		errs = append(errs, errors.New("a store is required"))
	}
	if len(cfg.IPKey) < 16 {
		errs = append(errs, errors.New("IPKey must be at least 16 bytes"))
	}
	if cfg.BatchSize > maxBatch {
		errs = append(errs, fmt.Errorf("BatchSize must be at most %d", maxBatch))
	}
	if !cookieNameRE.MatchString(cfg.CookieName) || !cookieNameRE.MatchString(cfg.VisitorCookie) || cfg.CookieName == cfg.VisitorCookie {
		errs = append(errs, errors.New("CookieName and VisitorCookie must be two different names of letters, digits, '-' or '_'"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuring referral links: %w", err)
	}
	return &Links{
		cfg:      cfg,
		st:       st,
		log:      cfg.Logger,
		partners: newTTLCache[*Partner](cfg.CacheTTL, cfg.Now),
		programs: newTTLCache[*Program](cfg.CacheTTL, cfg.Now),
		clicks:   make(chan *Click, cfg.Buffer),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}, nil
}

// Mount adds GET /r/:code and GET /t.js to e. They need no API key.
func (l *Links) Mount(e *echo.Echo) {
	e.GET("/r/:code", l.redirect)
	e.GET("/t.js", l.script)
}

// MountAPI adds GET /clicks to g, which must already authenticate (Auth).
func (l *Links) MountAPI(g *echo.Group) {
	g.GET("/clicks", l.listClicks, StaffOrPartner)
}

var partnerCodeRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (l *Links) redirect(c echo.Context) error {
	req := c.Request()
	ctx := req.Context()
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")

	code := c.Param("code")
	if !partnerCodeRE.MatchString(code) {
		return c.String(http.StatusNotFound, "Referral link not found.\n")
	}
	ptn, err := l.partner(ctx, code)
	if errors.Is(err, ErrNotFound) {
		return c.String(http.StatusNotFound, "Referral link not found.\n")
	}
	if err != nil {
		l.log.ErrorContext(ctx, "finding referral link partner failed", "error", err)
		h.Set("Retry-After", "5")
		return c.String(http.StatusServiceUnavailable, "Referral links are unavailable; try again in a moment.\n")
	}
	prog, err := l.program(ctx, ptn.ProgramID)
	if err != nil {
		l.log.ErrorContext(ctx, "loading referral link program failed", "program_id", ptn.ProgramID, "error", err)
		h.Set("Retry-After", "5")
		return c.String(http.StatusServiceUnavailable, "Referral links are unavailable; try again in a moment.\n")
	}
	dest := destination(prog.ProgramSettings, c.QueryParam("to"))
	if dest == nil {
		return c.String(http.StatusNotFound, "This referral program has no destination URL configured (program setting destination_url).\n")
	}

	now := l.cfg.Now()
	vid := ""
	if ck, err := req.Cookie(l.cfg.VisitorCookie); err == nil && visitorRE.MatchString(ck.Value) {
		vid = ck.Value
	} else {
		vid = newVisitorID()
	}
	click := &Click{
		ID:          NewID("clk"),
		ProgramID:   ptn.ProgramID,
		PartnerID:   ptn.ID,
		VisitorID:   vid,
		LandingURL:  clip(c.Scheme()+"://"+req.Host+req.RequestURI, 2048),
		Destination: clip(dest.String(), 2048),
		Referrer:    clip(req.Referer(), 2048),
		IPHash:      l.hash("ip", c.RealIP()),
		UAHash:      l.hash("ua", req.UserAgent()),
		CreatedAt:   now.UTC(),
	}
	id := click.ID // the writer owns click once it is queued
	l.enqueue(ctx, click)

	window := prog.Cookie()
	// Secure only makes the cookies stricter, so any X-Forwarded-Proto
	// https counts, trusted proxy or not.
	xfp, _, _ := strings.Cut(req.Header.Get(echo.HeaderXForwardedProto), ",")
	secure := c.Scheme() == "https" || strings.EqualFold(strings.TrimSpace(xfp), "https")
	for _, ck := range []*http.Cookie{
		{Name: l.cfg.CookieName, Value: id},
		{Name: l.cfg.VisitorCookie, Value: vid, HttpOnly: true},
	} {
		ck.Path, ck.Domain, ck.Secure, ck.SameSite = "/", l.cfg.CookieDomain, secure, http.SameSiteLaxMode
		ck.MaxAge, ck.Expires = int(window/time.Second), now.Add(window)
		c.SetCookie(ck)
	}
	return c.Redirect(http.StatusFound, withClick(dest, id))
}

// destination returns where a referral link sends its visitor: to when it
// is an absolute http(s) URL on the destination's host or one of the
// allowed hosts (a leading "*." allows subdomains), else the program's
// destination URL; nil when there is neither.
func destination(s ProgramSettings, to string) *url.URL {
	def := absURL(s.DestinationURL)
	if to != "" {
		if u := absURL(to); u != nil && allowedHost(u.Hostname(), def, s.AllowedHosts) {
			return u
		}
	}
	return def
}

// absURL parses an absolute http or https URL with a host and no user
// info, or returns nil.
func absURL(s string) *url.URL {
	if s == "" || len(s) > 4096 || strings.ContainsAny(s, "\\ \t\r\n") {
		return nil
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return nil
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.User != nil || u.Opaque != "" || u.Hostname() == "" {
		return nil
	}
	if sch := strings.ToLower(u.Scheme); sch != "http" && sch != "https" {
		return nil
	}
	u.Scheme = strings.ToLower(u.Scheme)
	return u
}

func allowedHost(host string, def *url.URL, allowed []string) bool {
	host = strings.ToLower(host)
	if def != nil && host == strings.ToLower(def.Hostname()) {
		return true
	}
	for _, a := range allowed {
		a = strings.ToLower(strings.TrimSpace(a))
		if u := absURL(a); u != nil { // a URL given for a host
			a = strings.ToLower(u.Hostname())
		}
		if sfx, ok := strings.CutPrefix(a, "*."); ok {
			if strings.HasSuffix(host, "."+sfx) {
				return true
			}
			continue
		}
		if h, _, err := net.SplitHostPort(a); err == nil {
			a = h
		}
		if a != "" && host == a {
			return true
		}
	}
	return false
}

// withClick returns u with partnerhub_click=id appended to its query; the
// query it has is kept as written, less any stale partnerhub_click.
func withClick(u *url.URL, id string) string {
	v := *u
	var kept []string
	for _, p := range strings.Split(v.RawQuery, "&") {
		if p == "" {
			continue
		}
		k, _, _ := strings.Cut(p, "=")
		if k == ClickParam {
			continue
		}
		kept = append(kept, p)
	}
	kept = append(kept, ClickParam+"="+url.QueryEscape(id))
	v.RawQuery = strings.Join(kept, "&")
	v.ForceQuery = false
	return v.String()
}

var visitorRE = regexp.MustCompile(`^[A-Za-z0-9_-]{8,64}$`)

func newVisitorID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "vis_" + base64.RawURLEncoding.EncodeToString(b)
}

// hash is the keyed hash stored instead of an IP address or user agent.
func (l *Links) hash(kind, v string) string {
	if v == "" {
		return ""
	}
	m := hmac.New(sha256.New, l.cfg.IPKey)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil))
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// partner finds the partner of a code: in the default program, else in
// any program.
func (l *Links) partner(ctx context.Context, code string) (*Partner, error) {
	return l.partners.get(strings.ToLower(code), func() (*Partner, error) {
		p, err := l.st.FindPartnerByCode(ctx, DefaultProgramID, code)
		if errors.Is(err, ErrNotFound) {
			p, err = l.st.FindPartnerByCode(ctx, "", code)
		}
		return p, err
	})
}

func (l *Links) program(ctx context.Context, id string) (*Program, error) {
	if id == "" {
		id = DefaultProgramID
	}
	return l.programs.get(id, func() (*Program, error) { return l.st.GetProgram(ctx, id) })
}

// enqueue hands a click to the batch writer, or writes it now when the
// buffer is full or the writer has stopped.
func (l *Links) enqueue(ctx context.Context, c *Click) {
	l.mu.RLock()
	if !l.closed {
		select {
		case l.clicks <- c:
			l.mu.RUnlock()
			return
		default:
		}
	}
	l.mu.RUnlock()
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := l.st.InsertClicks(wctx, []*Click{c}); err != nil {
		l.log.ErrorContext(ctx, "writing click failed", "error", err)
	}
}

// Run writes queued clicks in batches until ctx is done or Close is
// called, then writes every click still queued and returns. Clicks that
// arrive afterwards are written one by one by their request. Run after
// Close returns nil at once.
func (l *Links) Run(ctx context.Context) error {
	if !l.started.CompareAndSwap(false, true) {
		select {
		case <-l.stop:
			return nil // closed already: requests write their own clicks
		default:
			return errors.New("referral links: Run called twice")
		}
	}
	defer close(l.done)
	wctx := context.WithoutCancel(ctx)
	batch := make([]*Click, 0, l.cfg.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	flush := func() {
		if armed {
			timer.Stop()
			armed = false
		}
		if len(batch) > 0 {
			_ = l.write(wctx, batch)
			batch = make([]*Click, 0, l.cfg.BatchSize)
		}
	}
	for {
		select {
		case c := <-l.clicks:
			batch = append(batch, c)
			if len(batch) >= l.cfg.BatchSize {
				flush()
			} else if !armed {
				timer.Reset(l.cfg.FlushEvery)
				armed = true
			}
		case <-timer.C:
			armed = false
			flush()
		case <-ctx.Done():
			flush()
			l.err = l.drain(wctx)
			return nil
		case <-l.stop:
			flush()
			l.err = l.drain(wctx)
			return nil
		}
	}
}

// Close stops taking clicks into memory and waits until every queued click
// is written. It returns the error of that last write.
func (l *Links) Close() error {
	l.stopped.Do(func() { close(l.stop) })
	if l.started.CompareAndSwap(false, true) { // Run never ran
		err := l.drain(context.Background())
		close(l.done)
		return err
	}
	<-l.done
	return l.err
}

// drain refuses new clicks into memory, then writes those queued.
func (l *Links) drain(ctx context.Context) error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	var errs []error
	for {
		batch := make([]*Click, 0, l.cfg.BatchSize)
	fill:
		for len(batch) < l.cfg.BatchSize {
			select {
			case c := <-l.clicks:
				batch = append(batch, c)
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			return errors.Join(errs...)
		}
		if err := l.write(ctx, batch); err != nil {
			errs = append(errs, err)
		}
	}
}

// write inserts one batch, trying three times before it gives up.
func (l *Links) write(ctx context.Context, batch []*Click) error {
	var err error
	for attempt, wait := 1, 100*time.Millisecond; attempt <= 3; attempt, wait = attempt+1, wait*4 {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = l.st.InsertClicks(wctx, batch)
		cancel()
		if err == nil {
			return nil
		}
		if attempt < 3 {
			time.Sleep(wait)
		}
	}
	l.log.ErrorContext(ctx, "writing clicks failed; dropping them", "count", len(batch), "error", err)
	return fmt.Errorf("writing %d clicks: %w", len(batch), err)
}

//go:embed static/t.js
var trackerJS []byte

// script serves t.js with the cookie name and the program's cookie window
// filled in (?program= picks a program; default: the default program).
func (l *Links) script(c echo.Context) error {
	days := 60
	id := c.QueryParam("program")
	if id == "" || !partnerCodeRE.MatchString(id) {
		id = DefaultProgramID
	}
	if p, err := l.program(c.Request().Context(), id); err == nil {
		days = int(p.Cookie() / (24 * time.Hour))
	}
	js := bytes.Replace(trackerJS, []byte(`/*ph:cookie_days*/60`), []byte(`/*ph:cookie_days*/`+strconv.Itoa(days)), 1)
	js = bytes.Replace(js, []byte(`/*ph:cookie_name*/"ph_click"`), []byte(`/*ph:cookie_name*/`+strconv.Quote(l.cfg.CookieName)), 1)
	h := c.Response().Header()
	h.Set("Cache-Control", "public, max-age=3600")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Access-Control-Allow-Origin", "*")
	return c.Blob(http.StatusOK, "application/javascript; charset=utf-8", js)
}

func (l *Links) listClicks(c echo.Context) error {
	k := Caller(c)
	if k == nil {
		return Errorf(EUNAUTHORIZED, "missing bearer API key")
	}
	p, err := PageOf(c)
	if err != nil {
		return err
	}
	f, err := FilterOf(c)
	if err != nil {
		return err
	}
	cs, err := l.st.ListClicks(c.Request().Context(), k.ProgramID, f, p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, NewList(cs, p, func(x *Click) string { return x.ID }))
}

// ttlCache remembers lookups, and not-found answers, for a while. It holds
// at most ttlCacheMax entries; when full it starts over.
type ttlCache[T any] struct {
	ttl time.Duration
	now func() time.Time
	mu  sync.Mutex
	m   map[string]ttlEntry[T]
}

type ttlEntry[T any] struct {
	v   T
	err error
	exp time.Time
}

const ttlCacheMax = 10000

func newTTLCache[T any](ttl time.Duration, now func() time.Time) *ttlCache[T] {
	return &ttlCache[T]{ttl: ttl, now: now, m: map[string]ttlEntry[T]{}}
}

func (c *ttlCache[T]) get(key string, load func() (T, error)) (T, error) {
	if c.ttl < 0 {
		return load()
	}
	now := c.now()
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Before(e.exp) {
		return e.v, e.err
	}
	v, err := load()
	if err != nil && !errors.Is(err, ErrNotFound) {
		return v, err // not remembered: the next click tries again
	}
	c.mu.Lock()
	if len(c.m) >= ttlCacheMax {
		c.m = map[string]ttlEntry[T]{}
	}
	c.m[key] = ttlEntry[T]{v: v, err: err, exp: now.Add(c.ttl)}
	c.mu.Unlock()
	return v, err
}
