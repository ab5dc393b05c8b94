package connectors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/netguard"
)

// Paddle Billing backfill.
//
// Paddle retries a notification for up to three days. After a longer
// outage Reconcile recovers what was missed: it lists the events Paddle
// keeps (GET /events, 90 days) of the types the connector reads, oldest
// first (order_by=id[ASC]), page by page with the `after` cursor (the last
// event_id read; Paddle IDs sort by creation time) until
// meta.pagination.has_more is false, and returns each event to be ingested
// like a webhook. The dedupe key is the event_id, so events already
// received by webhook are duplicates.
//
// Credentials: api_key, an API key (Bearer). The API is
// https://api.paddle.com, or https://sandbox-api.paddle.com when the source
// option sandbox is "true"; the option api_base replaces either (https
// only, except for a loopback address).
//
// Cursor: the last event_id read, or an RFC 3339 time (a backfill "since"),
// turned into the smallest event id of that millisecond. A poll that reads
// everything leaves the cursor no later than now minus Settle, so that
// events made visible late are listed again. The first poll of a source
// looks back FirstWindow (72 h, Paddle's retry window).

const (
	paddleDefaultAPIBase     = "https://api.paddle.com"
	paddleSandboxAPIBase     = "https://sandbox-api.paddle.com"
	paddleMaxPageSize        = 200 // GET /events per_page maximum
	paddleDefaultMaxPages    = 100
	paddleDefaultFirstWindow = 72 * time.Hour
	paddleDefaultTimeout     = 30 * time.Second
	paddleDefaultSettle      = 10 * time.Minute
	paddleMaxResponseBytes   = 32 << 20
)

// paddleBackfillTypes are the event types Normalize reads; the others
// would only be ingested to be ignored.
var paddleBackfillTypes = []string{"transaction.paid", "transaction.completed", "adjustment.created", "adjustment.updated"}

var paddleEventIDRE = regexp.MustCompile(`^evt_[a-z0-9]{26}$`)

// PaddleBackfillConfig configures the Paddle Billing connector's backfill.
type PaddleBackfillConfig struct {
	// Client makes the API calls. Zero value: netguard.NewClient with no
	// allowed networks (public addresses only).
	Client *http.Client
	// Timeout bounds each API request, body included. Zero: 30 s.
	Timeout time.Duration
	// PageSize is per_page, at most 200. Zero: 200.
	PageSize int
	// MaxPages bounds the pages read in one poll; the next poll resumes
	// where this one stopped. Zero: 100.
	MaxPages int
	// FirstWindow is how far back the first poll of a source looks. Zero:
	// 72 h.
	FirstWindow time.Duration
	// Settle is how far behind now a completed poll leaves the cursor at
	// most, so that events created while it ran are listed again. Zero:
	// 10 min.
	Settle time.Duration
}

func (c PaddleBackfillConfig) withDefaults() PaddleBackfillConfig {
	if c.Client == nil {
		c.Client = netguard.NewClient(netguard.Config{})
	}
	if c.Timeout <= 0 {
		c.Timeout = paddleDefaultTimeout
	}
	if c.PageSize <= 0 || c.PageSize > paddleMaxPageSize {
		c.PageSize = paddleMaxPageSize
	}
	if c.MaxPages <= 0 {
		c.MaxPages = paddleDefaultMaxPages
	}
	if c.FirstWindow <= 0 {
		c.FirstWindow = paddleDefaultFirstWindow
	}
	if c.Settle <= 0 {
		c.Settle = paddleDefaultSettle
	}
	return c
}

var _ hub.Reconciler = (*Paddle)(nil)

// paddleIDAt returns the smallest event id Paddle could have given an
// event at t: listing after it lists the events from t on.
func paddleIDAt(t time.Time) string {
	var id ulid.ULID
	_ = id.SetTime(ulid.Timestamp(t))
	return "evt_" + strings.ToLower(id.String())
}

// paddleCursor reads a cursor: an event id, an RFC 3339 time, or "" for
// the first poll.
func paddleCursor(cursor string, first time.Time) (string, error) {
	switch {
	case cursor == "":
		return paddleIDAt(first), nil
	case paddleEventIDRE.MatchString(cursor):
		return cursor, nil
	}
	t, err := time.Parse(time.RFC3339, cursor)
	if err != nil {
		return "", fmt.Errorf("invalid paddle backfill cursor %.80q", cursor)
	}
	return paddleIDAt(t), nil
}

// Reconcile lists the events of the types the connector reads created
// after the cursor.
func (p *Paddle) Reconcile(ctx context.Context, src *hub.Source, cursor string, now time.Time) (*hub.Reconciliation, error) {
	cfg := p.backfill.withDefaults()
	key := strings.TrimSpace(src.Credentials["api_key"])
	if key == "" {
		return nil, errors.New("paddle source needs the credential api_key: a Paddle API key that may read events")
	}
	def := paddleDefaultAPIBase
	if src.Option("sandbox") == "true" {
		def = paddleSandboxAPIBase
	}
	base, err := reconcileAPIBase("paddle", src.Option("api_base"), def)
	if err != nil {
		return nil, err
	}
	after, err := paddleCursor(cursor, now.Add(-cfg.FirstWindow))
	if err != nil {
		return nil, err
	}
	start := after
	res := &hub.Reconciliation{Cursor: after}
	for page := 1; ; page++ {
		if page > cfg.MaxPages || (page > 1 && nearDeadline(ctx)) {
			res.More = true
			break
		}
		l, err := paddleListEvents(ctx, cfg, base, key, after, page)
		if err != nil {
			return nil, err
		}
		for _, ev := range l.events {
			if ev.id <= after {
				continue // not after the cursor: already read
			}
			res.Events = append(res.Events, hub.ReconciledEvent{
				Receipt: hub.Receipt{DedupeKey: ev.id, EventType: ev.typ, Headers: map[string]string{wooHeaderReconciled: "true"}},
				Body:    ev.body,
			})
			after = ev.id
		}
		res.Cursor = after
		if !l.hasMore || len(l.events) == 0 {
			break
		}
	}
	if settled := paddleIDAt(now.Add(-cfg.Settle)); !res.More && res.Cursor > settled {
		res.Cursor = max(settled, start)
	}
	return res, nil
}

type paddleListedEvent struct {
	id, typ string
	body    []byte
}

type paddleListing struct {
	events  []paddleListedEvent
	hasMore bool
}

// paddleListEvents reads one page of GET /events after the event id after.
// Errors name the request, never the key.
func paddleListEvents(ctx context.Context, cfg PaddleBackfillConfig, base, key, after string, page int) (*paddleListing, error) {
	what := "paddle GET /events page " + strconv.Itoa(page)
	q := url.Values{}
	q.Set("after", after)
	q.Set("order_by", "id[ASC]")
	q.Set("per_page", strconv.Itoa(cfg.PageSize))
	q.Set("event_type", strings.Join(paddleBackfillTypes, ","))
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events?"+q.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Accept", "application/json")
	resp, err := cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, paddleMaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: reading the answer: %w", what, err)
	}
	if len(body) > paddleMaxResponseBytes {
		return nil, fmt.Errorf("%s: answer larger than %d bytes", what, paddleMaxResponseBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("%s: %s%s", what, resp.Status, paddleErrorDetail(resp.StatusCode, body))
	}
	var l struct {
		Data []json.RawMessage `json:"data"`
		Meta struct {
			Pagination struct {
				HasMore bool `json:"has_more"`
			} `json:"pagination"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(body, &l); err != nil {
		return nil, fmt.Errorf("%s: the answer is not an event list", what)
	}
	out := &paddleListing{hasMore: l.Meta.Pagination.HasMore}
	for _, raw := range l.Data {
		var head struct {
			EventID   string `json:"event_id"`
			EventType string `json:"event_type"`
		}
		if err := json.Unmarshal(raw, &head); err != nil || head.EventID == "" {
			return nil, fmt.Errorf("%s: the answer lists something that is not an event", what)
		}
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return nil, fmt.Errorf("%s: %v", what, err)
		}
		out.events = append(out.events, paddleListedEvent{id: head.EventID, typ: head.EventType, body: b.Bytes()})
	}
	return out, nil
}

// paddleErrorDetail explains a failed call: Paddle's error code and
// detail, and what to check.
func paddleErrorDetail(status int, body []byte) string {
	var e struct {
		Error struct {
			Code   string `json:"code"`
			Detail string `json:"detail"`
		} `json:"error"`
	}
	var parts []string
	if json.Unmarshal(body, &e) == nil && (e.Error.Code != "" || e.Error.Detail != "") {
		parts = append(parts, fmt.Sprintf("%.80s: %.200s", e.Error.Code, e.Error.Detail))
	}
	switch status {
	case http.StatusUnauthorized:
		parts = append(parts, "check the source's api_key, and the sandbox option for a sandbox key")
	case http.StatusForbidden:
		parts = append(parts, "the API key may not read events")
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}
