package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/partnerhub/partnerhub/hub"
)

// The operator commands call a running hub's API: list and retry
// deliveries, re-enable and ping endpoints, replay events. They read the
// hub's address and an API key (admin or ops) from --url and --key, or
// PARTNERHUB_URL and PARTNERHUB_KEY.

// defaultAPIURL is where the operator commands look for the hub when
// neither --url nor PARTNERHUB_URL says.
const defaultAPIURL = "http://127.0.0.1:8080"

// apiClient calls the hub's API for one command.
type apiClient struct {
	getenv func(string) string
	out    io.Writer
	url    string
	key    string
	json   bool
	output string
	http   *http.Client
}

// newAPIClient adds the connection flags to cmd (and its subcommands).
// The key is never a flag default, so help output cannot show it.
func newAPIClient(cmd *cobra.Command, getenv func(string) string, out io.Writer) *apiClient {
	c := &apiClient{getenv: getenv, out: out, http: &http.Client{Timeout: 2 * time.Minute}}
	f := cmd.PersistentFlags()
	f.StringVar(&c.url, "url", "", "base URL of the hub (default $PARTNERHUB_URL, else "+defaultAPIURL+")")
	f.StringVar(&c.key, "key", "", "API key with the admin or ops role (default $PARTNERHUB_KEY)")
	f.StringVarP(&c.output, "output", "o", "table", "output format: table or json (reports also csv)")
	f.BoolVar(&c.json, "json", false, "print the API's JSON answer (same as -o json)")
	return c
}

// isJSON reports whether the API's JSON answer is to be printed as is.
func (c *apiClient) isJSON() bool { return c.json || c.output == "json" }

// problemError is an API error answer (RFC 9457 problem+json).
type problemError struct {
	hub.Problem
}

func (e *problemError) Error() string {
	msg := e.Title
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if len(e.Errors) > 0 {
		var fields []string
		for k, v := range e.Errors {
			fields = append(fields, k+" "+v)
		}
		slices.Sort(fields)
		msg += " (" + strings.Join(fields, "; ") + ")"
	}
	return msg
}

// call sends method path (under /api/v1) with body encoded as JSON (nil
// for none), decodes a 2xx answer into v and returns its status and raw
// JSON.
func (c *apiClient) call(ctx context.Context, method, path string, query url.Values, body, v any) (int, []byte, error) {
	base := c.url
	if base == "" {
		base = c.getenv("PARTNERHUB_URL")
	}
	if base == "" {
		base = defaultAPIURL
	}
	key := c.key
	if key == "" {
		key = c.getenv("PARTNERHUB_KEY")
	}
	if key == "" {
		return 0, nil, errors.New("no API key: pass --key or set PARTNERHUB_KEY")
	}
	u := strings.TrimSuffix(strings.TrimRight(base, "/"), "/api/v1") + "/api/v1" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("--url: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("calling the hub: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("reading the hub's answer: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var p problemError
		if json.Unmarshal(raw, &p.Problem) != nil || p.Title == "" {
			p.Title = resp.Status
		}
		return resp.StatusCode, raw, &p
	}
	if v != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, v); err != nil {
			return resp.StatusCode, raw, fmt.Errorf("reading the hub's answer: %w", err)
		}
	}
	return resp.StatusCode, raw, nil
}

// printJSON writes the API's answer indented, for --json.
func (c *apiClient) printJSON(raw []byte) {
	var b bytes.Buffer
	if json.Indent(&b, raw, "", "  ") != nil {
		b.Reset()
		b.Write(raw)
	}
	fmt.Fprintln(c.out, b.String())
}

// parseSince reads an RFC 3339 time or a duration back from now ("6h",
// "90m", "3d").
func parseSince(s string, now time.Time) (string, error) {
	if s == "" {
		return "", nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour).UTC().Format(time.RFC3339Nano), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d).UTC().Format(time.RFC3339Nano), nil
	}
	return "", fmt.Errorf("%q is neither an RFC 3339 time nor a duration such as 6h or 3d", s)
}

// newDeliveriesCmd is `partnerhub deliveries list|retry`.
func newDeliveriesCmd(getenv func(string) string, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deliveries",
		Short: "List and retry webhook deliveries of a running hub",
	}
	cmd.SetOut(stdout) // help goes where the command's output goes
	c := newAPIClient(cmd, getenv, stdout)
	cmd.AddCommand(newDeliveriesListCmd(c), newDeliveriesRetryCmd(c))
	return cmd
}

func newDeliveriesListCmd(c *apiClient) *cobra.Command {
	var status, endpoint, eventType, partner, since, until, cursor string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List deliveries, newest first, filtered by status, endpoint, event type and time",
		Example: `  partnerhub deliveries list --status failed --endpoint ep_01J… --since 24h
  partnerhub deliveries list --event-type 'commission.*' --limit 200`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"status": status, "endpoint_id": endpoint, "event_type": eventType, "partner_id": partner, "cursor": cursor} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if err := setTimes(q, since, until); err != nil {
				return err
			}
			q.Set("limit", strconv.Itoa(limit))
			var l hub.List[*hub.Delivery]
			_, raw, err := c.call(cmd.Context(), http.MethodGet, "/deliveries", q, nil, &l)
			if err != nil {
				return err
			}
			if c.isJSON() {
				c.printJSON(raw)
				return nil
			}
			tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATUS\tATTEMPTS\tEVENT TYPE\tEVENT\tENDPOINT\tCREATED\tLAST ERROR")
			for _, d := range l.Data {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Status, d.Attempts, d.EventType, d.EventID,
					d.EndpointID, d.CreatedAt.UTC().Format(time.RFC3339), oneLine(d.LastError, 60))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if l.NextCursor != "" {
				fmt.Fprintf(c.out, "more: --cursor %s\n", l.NextCursor)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&status, "status", "", "pending, succeeded or failed")
	f.StringVar(&endpoint, "endpoint", "", "endpoint id")
	f.StringVar(&eventType, "event-type", "", `event type, a category such as "commission.*", or "*"`)
	f.StringVar(&partner, "partner", "", "partner id (of the event)")
	f.StringVar(&since, "since", "", "created at or after: RFC 3339 time or a duration back from now (24h, 3d)")
	f.StringVar(&until, "until", "", "created before: RFC 3339 time or a duration back from now")
	f.StringVar(&cursor, "cursor", "", "the cursor a previous page printed")
	f.IntVar(&limit, "limit", 50, "deliveries per page, 1 to 200")
	return cmd
}

func newDeliveriesRetryCmd(c *apiClient) *cobra.Command {
	var status, endpoint, eventType, since, until string
	cmd := &cobra.Command{
		Use:   "retry [DELIVERY_ID]",
		Short: "Retry one delivery now, or every failed delivery of an endpoint or since a time",
		Long: `Retry one delivery now, or, without DELIVERY_ID, every failed delivery that
matches --endpoint and/or --since (and optionally --until, --event-type,
--status succeeded). Retrying is idempotent: deliveries already pending are
left alone, so running the command twice requeues nothing the second time.
Deliveries to disabled endpoints are not retried: enable the endpoint first.`,
		Example: `  partnerhub deliveries retry dlv_01J…
  partnerhub deliveries retry --endpoint ep_01J… --since 2026-11-20T08:00:00Z
  partnerhub deliveries retry --since 6h`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			bulk := endpoint != "" || since != "" || until != "" || eventType != "" || status != ""
			if len(args) == 1 {
				if bulk {
					return errors.New("give a delivery id or filters, not both")
				}
				var out struct {
					Requeued bool          `json:"requeued"`
					Delivery *hub.Delivery `json:"delivery"`
				}
				_, raw, err := c.call(ctx, http.MethodPost, "/deliveries/"+url.PathEscape(args[0])+"/retry", nil, nil, &out)
				if err != nil {
					return err
				}
				if c.isJSON() {
					c.printJSON(raw)
					return nil
				}
				if !out.Requeued {
					fmt.Fprintf(c.out, "%s is pending already; nothing to do\n", args[0])
					return nil
				}
				fmt.Fprintf(c.out, "requeued %s: attempt %d queued now\n", args[0], out.Delivery.Attempts+1)
				return nil
			}
			if endpoint == "" && since == "" {
				return errors.New("give a delivery id, or --endpoint and/or --since for a bulk retry")
			}
			times := url.Values{}
			if err := setTimes(times, since, until); err != nil {
				return err
			}
			body := map[string]string{"endpoint_id": endpoint, "event_type": eventType, "status": status,
				"since": times.Get("since"), "until": times.Get("until")}
			var out struct {
				Requeued int `json:"requeued"`
			}
			_, raw, err := c.call(ctx, http.MethodPost, "/deliveries/retry", nil, body, &out)
			if err != nil {
				return err
			}
			if c.isJSON() {
				c.printJSON(raw)
				return nil
			}
			fmt.Fprintf(c.out, "requeued %d deliveries\n", out.Requeued)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&endpoint, "endpoint", "", "bulk: deliveries to this endpoint")
	f.StringVar(&since, "since", "", "bulk: created at or after (RFC 3339 time or a duration back from now: 6h, 3d)")
	f.StringVar(&until, "until", "", "bulk: created before")
	f.StringVar(&eventType, "event-type", "", `bulk: event type or category ("commission.*")`)
	f.StringVar(&status, "status", "", "bulk: failed (the default) or succeeded")
	return cmd
}

// newEndpointsCmd is `partnerhub endpoints enable|ping`.
func newEndpointsCmd(getenv func(string) string, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "endpoints",
		Short: "List, create, re-enable and ping webhook endpoints of a running hub",
	}
	cmd.SetOut(stdout) // help goes where the command's output goes
	c := newAPIClient(cmd, getenv, stdout)
	enable := &cobra.Command{
		Use:   "enable ENDPOINT_ID",
		Short: "Re-enable a disabled endpoint and clear its failure state",
		Long: `Re-enable a disabled endpoint (auto-disabled after failing for days or
answering 410 Gone, or disabled by an operator) and clear its failure state.
What failed while it was disabled stays failed: retry it with
'partnerhub deliveries retry --endpoint ENDPOINT_ID'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ep hub.Endpoint
			_, raw, err := c.call(cmd.Context(), http.MethodPost, "/endpoints/"+url.PathEscape(args[0])+"/enable", nil, nil, &ep)
			if err != nil {
				return err
			}
			if c.isJSON() {
				c.printJSON(raw)
				return nil
			}
			fmt.Fprintf(c.out, "enabled %s (%s)\nretry what failed meanwhile: partnerhub deliveries retry --endpoint %s\n", ep.ID, ep.URL, ep.ID)
			return nil
		},
	}
	ping := &cobra.Command{
		Use:   "ping ENDPOINT_ID",
		Short: "Send a ping event to an endpoint now and show the attempt",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out struct {
				Event    *hub.Event    `json:"event"`
				Delivery *hub.Delivery `json:"delivery"`
				Attempt  *hub.Attempt  `json:"attempt"`
			}
			_, raw, err := c.call(cmd.Context(), http.MethodPost, "/endpoints/"+url.PathEscape(args[0])+"/ping", nil, nil, &out)
			if err != nil {
				return err
			}
			if c.isJSON() {
				c.printJSON(raw)
				return nil
			}
			a := out.Attempt
			switch {
			case a == nil:
				fmt.Fprintf(c.out, "ping %s to %s not attempted yet: delivery %s is pending (the endpoint's circuit breaker is open)\n",
					out.Event.ID, args[0], out.Delivery.ID)
			case a.Error == "":
				fmt.Fprintf(c.out, "ping %s to %s: answered %d in %d ms\n", out.Event.ID, args[0], a.StatusCode, a.LatencyMS)
			default:
				fmt.Fprintf(c.out, "ping %s to %s failed after %d ms: %s\n", out.Event.ID, args[0], a.LatencyMS, oneLine(a.Error, 200))
				if a.ResponseBody != "" {
					fmt.Fprintf(c.out, "response: %s\n", oneLine(a.ResponseBody, 200))
				}
				fmt.Fprintf(c.out, "delivery %s is %s\n", out.Delivery.ID, out.Delivery.Status)
			}
			return nil
		},
	}
	cmd.AddCommand(enable, ping, endpointsListCmd(c), getCmd(c, "/endpoints", "Show an endpoint (never its secret)"), endpointsCreateCmd(c))
	return cmd
}

// newEventsCmd is `partnerhub events replay`.
func newEventsCmd(getenv func(string) string, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Replay outbound events of a running hub",
	}
	cmd.SetOut(stdout) // help goes where the command's output goes
	c := newAPIClient(cmd, getenv, stdout)
	var endpoint string
	replay := &cobra.Command{
		Use:   "replay EVENT_ID --endpoint ENDPOINT_ID",
		Short: "Deliver a past event again to an endpoint, with the same webhook-id",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if endpoint == "" {
				return errors.New("--endpoint is required")
			}
			var d hub.Delivery
			_, raw, err := c.call(cmd.Context(), http.MethodPost, "/events/"+url.PathEscape(args[0])+"/replay", nil,
				map[string]string{"endpoint_id": endpoint}, &d)
			if err != nil {
				return err
			}
			if c.isJSON() {
				c.printJSON(raw)
				return nil
			}
			fmt.Fprintf(c.out, "replaying %s to %s: delivery %s queued\n", d.EventID, d.EndpointID, d.ID)
			return nil
		},
	}
	replay.Flags().StringVar(&endpoint, "endpoint", "", "the endpoint to deliver to (required)")
	cmd.AddCommand(replay)
	return cmd
}

// oneLine shortens s to n runes on one line.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
