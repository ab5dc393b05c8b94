package connectors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/event"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/netguard"
)

// Stripe backfill.
//
// Stripe retries a webhook for up to three days. After a longer outage (or
// a disabled endpoint) Reconcile recovers what was missed: it lists the
// account's events that are not delivered yet (GET /v1/events with
// delivery_success=false, which covers events still pending and those that
// failed every attempt) created after the cursor, newest first, following
// has_more / starting_after, and returns each event, exactly as the API
// renders it, to be ingested like a webhook. The dedupe key is the event
// id, so an event that later arrives by webhook (or was received before)
// is a duplicate. Stripe keeps events for 30 days.
//
// Credentials: api_key, a secret (sk_…) or restricted (rk_…) key that may
// read events. Source option api_base replaces https://api.stripe.com
// (https only, except for a loopback address).
//
// Cursor: an RFC 3339 time (events created after it are listed), or, when
// a poll stopped at its page or time bound, "after,up_to,then": the part
// of the window still to read (created after `after` and at or before
// `up_to`) and where the cursor moves once it is read. A poll that reads
// everything moves the cursor to now minus Settle, so events created
// during the poll are listed again by the next one. The first poll of a
// source looks back FirstWindow (72 h, Stripe's retry window).

const (
	stripeDefaultAPIBase      = "https://api.stripe.com"
	stripePageSize            = 100 // the events list's maximum
	stripeDefaultMaxPages     = 100
	stripeDefaultFirstWindow  = 72 * time.Hour
	stripeDefaultSettle       = 10 * time.Minute
	stripeDefaultTimeout      = 30 * time.Second
	reconcileDeadlineMargin   = 5 * time.Second
	stripeBackfillCursorParts = 3
)

// StripeBackfillConfig configures the Stripe connector's backfill.
type StripeBackfillConfig struct {
	// Client makes the API calls. Zero value: netguard.NewClient with no
	// allowed networks (public addresses only).
	Client *http.Client
	// Timeout bounds each API request. Zero: 30 s.
	Timeout time.Duration
	// MaxPages bounds the pages (of 100 events) read in one poll; the next
	// poll resumes where this one stopped. Zero: 100.
	MaxPages int
	// FirstWindow is how far back the first poll of a source looks. Zero:
	// 72 h.
	FirstWindow time.Duration
	// Settle is how far behind now a completed poll leaves the cursor, so
	// that events created while it ran are listed again. Zero: 10 min.
	Settle time.Duration
}

func (c StripeBackfillConfig) withDefaults() StripeBackfillConfig {
	if c.Client == nil {
		c.Client = netguard.NewClient(netguard.Config{})
	}
	if c.Timeout <= 0 {
		c.Timeout = stripeDefaultTimeout
	}
	if c.MaxPages <= 0 {
		c.MaxPages = stripeDefaultMaxPages
	}
	if c.FirstWindow <= 0 {
		c.FirstWindow = stripeDefaultFirstWindow
	}
	if c.Settle <= 0 {
		c.Settle = stripeDefaultSettle
	}
	return c
}

var _ hub.Reconciler = (*Stripe)(nil)

// stripeCursor is a position of the backfill: events created after After
// (and at or before UpTo when it is set) are still to be read; Then is
// where the cursor moves once they are.
type stripeCursor struct {
	After, UpTo, Then time.Time
}

func parseStripeCursor(s string, first time.Time) (stripeCursor, error) {
	if s == "" {
		return stripeCursor{After: first.UTC().Truncate(time.Second)}, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) != 1 && len(parts) != stripeBackfillCursorParts {
		return stripeCursor{}, fmt.Errorf("invalid stripe backfill cursor %.80q", s)
	}
	ts := make([]time.Time, len(parts))
	for i, p := range parts {
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(p))
		if err != nil {
			return stripeCursor{}, fmt.Errorf("invalid stripe backfill cursor %.80q", s)
		}
		ts[i] = t.UTC()
	}
	c := stripeCursor{After: ts[0]}
	if len(ts) == stripeBackfillCursorParts {
		c.UpTo, c.Then = ts[1], ts[2]
	}
	return c, nil
}

func (c stripeCursor) String() string {
	if c.UpTo.IsZero() {
		return c.After.Format(time.RFC3339)
	}
	return c.After.Format(time.RFC3339) + "," + c.UpTo.Format(time.RFC3339) + "," + c.Then.Format(time.RFC3339)
}

// reconcileAPIBase checks a source's api_base option: an absolute URL
// without credentials, query or fragment, https unless it names a loopback
// host (a local test server). Empty means def.
func reconcileAPIBase(provider, raw, def string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return def, nil
	}
	u, err := url.Parse(raw)
	bad := fmt.Errorf("%s source option api_base must be an https:// address without credentials, query or fragment", provider)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", bad
	}
	switch u.Scheme {
	case "https":
	case "http":
		if h := u.Hostname(); h != "localhost" && h != "127.0.0.1" && h != "::1" {
			return "", bad
		}
	default:
		return "", bad
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// Reconcile lists the events Stripe has not delivered yet, created after
// the cursor.
func (s *Stripe) Reconcile(ctx context.Context, src *hub.Source, cursor string, now time.Time) (*hub.Reconciliation, error) {
	cfg := s.backfill.withDefaults()
	key := strings.TrimSpace(src.Credentials["api_key"])
	if !strings.HasPrefix(key, "sk_") && !strings.HasPrefix(key, "rk_") {
		return nil, errors.New("stripe source needs the credential api_key: a secret (sk_…) or restricted (rk_…) key that may read events")
	}
	base, err := reconcileAPIBase("stripe", src.Option("api_base"), stripeDefaultAPIBase)
	if err != nil {
		return nil, err
	}
	cur, err := parseStripeCursor(cursor, now.Add(-cfg.FirstWindow))
	if err != nil {
		return nil, err
	}
	client := *cfg.Client
	if client.Timeout == 0 || client.Timeout > cfg.Timeout {
		client.Timeout = cfg.Timeout
	}
	backend := stripe.GetBackendWithConfig(stripe.APIBackend, &stripe.BackendConfig{
		HTTPClient:        &client,
		URL:               stripe.String(base),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		MaxNetworkRetries: stripe.Int64(2),
		EnableTelemetry:   stripe.Bool(false),
	})
	params := &stripe.EventListParams{
		DeliverySuccess: stripe.Bool(false),
		CreatedRange:    &stripe.RangeQueryParams{GreaterThan: cur.After.Unix()},
	}
	if !cur.UpTo.IsZero() {
		params.CreatedRange.LesserThanOrEqual = cur.UpTo.Unix()
	}
	params.Limit = stripe.Int64(stripePageSize)
	params.Context = ctx
	it := event.Client{B: backend, Key: key}.List(params)

	var (
		events          []hub.ReconciledEvent // newest first
		raws            map[string]json.RawMessage
		page            *stripe.EventList
		pages, consumed int
		newest, oldest  int64
		stopped         bool
	)
	for {
		// Stop between pages at the page or time bound, once the poll
		// has made progress (read events of two different seconds).
		if page != nil && consumed == len(page.Data) && page.HasMore && oldest < newest &&
			(pages >= cfg.MaxPages || nearDeadline(ctx)) {
			stopped = true
			break
		}
		if !it.Next() {
			break
		}
		if l := it.EventList(); l != page {
			page, consumed = l, 0
			pages++
			if raws, err = stripeRawEvents(l); err != nil {
				return nil, err
			}
		}
		consumed++
		ev := it.Event()
		raw, ok := raws[ev.ID]
		if !ok || ev.ID == "" {
			return nil, fmt.Errorf("stripe GET /v1/events page %d: event %.40q is not in the answer's data", pages, ev.ID)
		}
		var body bytes.Buffer
		if err := json.Compact(&body, raw); err != nil {
			return nil, fmt.Errorf("stripe GET /v1/events page %d: %v", pages, err)
		}
		events = append(events, hub.ReconciledEvent{
			Receipt: hub.Receipt{DedupeKey: ev.ID, EventType: string(ev.Type), Headers: map[string]string{wooHeaderReconciled: "true"}},
			Body:    body.Bytes(),
		})
		if newest == 0 || ev.Created > newest {
			newest = ev.Created
		}
		if oldest == 0 || ev.Created < oldest {
			oldest = ev.Created
		}
	}
	if err := it.Err(); err != nil {
		return nil, stripeAPIError(err)
	}
	// Ingest oldest first, as the events happened.
	for i, j := 0, len(events)-1; i < j; i, j = i+1, j-1 {
		events[i], events[j] = events[j], events[i]
	}
	next := cur
	switch {
	case stopped:
		// Events created at or before the oldest one read are left:
		// the window shrinks to them (its last second is read again).
		if next.UpTo.IsZero() {
			next.Then = laterOf(cur.After, now.Add(-cfg.Settle).UTC().Truncate(time.Second))
		}
		next.UpTo = time.Unix(oldest, 0).UTC()
	case !cur.UpTo.IsZero():
		next = stripeCursor{After: laterOf(cur.After, cur.Then)}
	default:
		next = stripeCursor{After: laterOf(cur.After, now.Add(-cfg.Settle).UTC().Truncate(time.Second))}
	}
	return &hub.Reconciliation{Events: events, Cursor: next.String(), More: stopped}, nil
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// nearDeadline reports whether ctx ends too soon for another page.
func nearDeadline(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && time.Until(d) < reconcileDeadlineMargin
}

// stripeRawEvents returns the events of a listing page exactly as the API
// rendered them, by id.
func stripeRawEvents(l *stripe.EventList) (map[string]json.RawMessage, error) {
	if l.LastResponse == nil {
		return nil, errors.New("stripe GET /v1/events: no answer body")
	}
	var page struct {
		Data []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(l.LastResponse.RawJSON, &page); err != nil {
		return nil, fmt.Errorf("stripe GET /v1/events: the answer is not an event list: %v", err)
	}
	out := make(map[string]json.RawMessage, len(page.Data))
	for _, raw := range page.Data {
		var head struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(raw, &head); err != nil || head.ID == "" {
			return nil, errors.New("stripe GET /v1/events: the answer lists something that is not an event")
		}
		out[head.ID] = raw
	}
	return out, nil
}

// stripeAPIError explains a failed listing without the API key (Stripe
// masks keys in its own messages).
func stripeAPIError(err error) error {
	var se *stripe.Error
	if !errors.As(err, &se) {
		return fmt.Errorf("stripe GET /v1/events: %w", err)
	}
	msg := fmt.Sprintf("stripe GET /v1/events: HTTP %d", se.HTTPStatusCode)
	if se.Code != "" {
		msg += " " + string(se.Code)
	}
	if se.Msg != "" {
		msg += fmt.Sprintf(": %.300s", se.Msg)
	}
	switch se.HTTPStatusCode {
	case http.StatusUnauthorized:
		msg += " (check the source's api_key)"
	case http.StatusForbidden:
		msg += " (the key may not read events: give the restricted key read access to Events)"
	}
	return errors.New(msg)
}
