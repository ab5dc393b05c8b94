package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/partnerhub/partnerhub/hub"
)

// The resource commands: sources, partners, keys, inbound events and
// reports over the API, printed as tables (or -o json).

// column is one column of a table: its heading and the JSON field shown
// (a dotted path into the item).
type column struct {
	head, field string
}

// cell formats the value at a dotted path of an item.
func cell(item map[string]any, path string) string {
	var v any = item
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = m[k]
	}
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return oneLine(x, 60)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = fmt.Sprint(e)
		}
		return oneLine(strings.Join(parts, ","), 60)
	default:
		b, _ := json.Marshal(x)
		return oneLine(string(b), 60)
	}
}

// setTimes puts --since and --until (RFC 3339 times or durations back
// from now) into q.
func setTimes(q url.Values, since, until string) error {
	for k, v := range map[string]string{"since": since, "until": until} {
		t, err := parseSince(v, time.Now())
		if err != nil {
			return fmt.Errorf("--%s: %w", k, err)
		}
		if t != "" {
			q.Set(k, t)
		}
	}
	return nil
}

// printTable prints items under cols.
func printTable(w io.Writer, items []map[string]any, cols []column) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	heads := make([]string, len(cols))
	for i, c := range cols {
		heads[i] = c.head
	}
	fmt.Fprintln(tw, strings.Join(heads, "\t"))
	for _, it := range items {
		row := make([]string, len(cols))
		for i, c := range cols {
			row[i] = cell(it, c.field)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// listCmd is a `list` subcommand over GET path with the common filters.
func listCmd(c *apiClient, path, short string, cols []column, filters ...string) *cobra.Command {
	vals := map[string]*string{}
	var cursor, since, until string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			for k, v := range vals {
				if *v != "" {
					q.Set(strings.ReplaceAll(k, "-", "_"), *v)
				}
			}
			if err := setTimes(q, since, until); err != nil {
				return err
			}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			q.Set("limit", strconv.Itoa(limit))
			var l struct {
				Data       []map[string]any `json:"data"`
				NextCursor string           `json:"next_cursor"`
			}
			_, raw, err := c.call(cmd.Context(), http.MethodGet, path, q, nil, &l)
			if err != nil {
				return err
			}
			if c.isJSON() {
				c.printJSON(raw)
				return nil
			}
			if err := printTable(c.out, l.Data, cols); err != nil {
				return err
			}
			if l.NextCursor != "" {
				fmt.Fprintf(c.out, "more: --cursor %s\n", l.NextCursor)
			}
			return nil
		},
	}
	f := cmd.Flags()
	for _, name := range filters {
		vals[name] = new(string)
		f.StringVar(vals[name], name, "", "only items with this "+strings.ReplaceAll(name, "-", " "))
	}
	f.StringVar(&since, "since", "", "at or after: RFC 3339 time or a duration back from now (24h, 3d)")
	f.StringVar(&until, "until", "", "before: RFC 3339 time or a duration back from now")
	f.StringVar(&cursor, "cursor", "", "the cursor a previous page printed")
	f.IntVar(&limit, "limit", 50, "items per page, 1 to 200")
	return cmd
}

// getCmd is a `get ID` subcommand printing the item's JSON.
func getCmd(c *apiClient, path, short string) *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, raw, err := c.call(cmd.Context(), http.MethodGet, path+"/"+url.PathEscape(args[0]), nil, nil, nil)
			if err != nil {
				return err
			}
			c.printJSON(raw)
			return nil
		},
	}
}

// printItem prints a created or changed item: its JSON with -o json, else
// the fields named.
func (c *apiClient) printItem(raw []byte, fields ...string) error {
	if c.isJSON() {
		c.printJSON(raw)
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("reading the hub's answer: %w", err)
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	var lists []string
	for _, f := range fields {
		if _, ok := m[f].([]any); ok {
			lists = append(lists, f) // printed in full below
			continue
		}
		fmt.Fprintf(tw, "%s:\t%s\n", f, cell(m, f))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range lists {
		fmt.Fprintf(c.out, "%s:\n", f)
		for i, v := range m[f].([]any) {
			fmt.Fprintf(c.out, "  %d. %v\n", i+1, v)
		}
	}
	return nil
}

// parseKV reads key=value flags into a map.
func parseKV(flag string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q: want key=value", flag, kv)
		}
		m[k] = v
	}
	return m, nil
}

// newSourcesCmd is `partnerhub sources list|get|create|update`.
func newSourcesCmd(getenv func(string) string, stdout io.Writer) (*cobra.Command, *apiClient) {
	cmd := &cobra.Command{Use: "sources", Short: "Connect billing platforms: list, create and update sources"}
	cmd.SetOut(stdout)
	c := newAPIClient(cmd, getenv, stdout)
	cols := []column{{"ID", "id"}, {"PROVIDER", "provider"}, {"NAME", "name"}, {"LAST VERIFIED", "last_verified_at"},
		{"LAST FAILURE", "last_failure"}, {"WEBHOOK URL", "webhook_url"}}
	var provider, name, secret string
	var options, creds []string
	create := &cobra.Command{
		Use:   "create --provider stripe --secret whsec_…",
		Short: "Create a source and print the webhook URL to paste into the provider",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := parseKV("option", options)
			if err != nil {
				return err
			}
			cr, err := parseKV("credential", creds)
			if err != nil {
				return err
			}
			body := map[string]any{"provider": provider, "name": name, "secret": secret, "options": opts, "credentials": cr}
			_, raw, err := c.call(cmd.Context(), http.MethodPost, "/sources", nil, body, nil)
			if err != nil {
				return err
			}
			return c.printItem(raw, "id", "provider", "name", "webhook_url", "setup")
		},
	}
	create.Flags().StringVar(&provider, "provider", "", "stripe, shopify, woocommerce, paddle or paddle_classic")
	create.Flags().StringVar(&name, "name", "", "a name for the source")
	create.Flags().StringVar(&secret, "secret", "", "the signing secret the provider shows for the webhook")
	create.Flags().StringArrayVar(&options, "option", nil, "provider option key=value (repeatable)")
	create.Flags().StringArrayVar(&creds, "credential", nil, "REST credential key=value for reconciliation and backfill (repeatable)")

	var newSecret, newName string
	var dropPrevious bool
	update := &cobra.Command{
		Use:   "update SOURCE_ID [--secret whsec_…] [--name …]",
		Short: "Rename a source or replace its signing secret (the previous one keeps verifying until the next change)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{}
			if newSecret != "" {
				body["secret"] = newSecret
			}
			if newName != "" {
				body["name"] = newName
			}
			if dropPrevious {
				body["keep_previous"] = false
			}
			if len(body) == 0 {
				return errors.New("nothing to change: give --secret, --name or --drop-previous")
			}
			_, raw, err := c.call(cmd.Context(), http.MethodPatch, "/sources/"+url.PathEscape(args[0]), nil, body, nil)
			if err != nil {
				return err
			}
			return c.printItem(raw, "id", "name", "webhook_url")
		},
	}
	update.Flags().StringVar(&newSecret, "secret", "", "the new signing secret")
	update.Flags().StringVar(&newName, "name", "", "the new name")
	update.Flags().BoolVar(&dropPrevious, "drop-previous", false, "stop accepting the previous secret now")
	cmd.AddCommand(listCmd(c, "/sources", "List sources with their last verified webhook and last failure", cols),
		getCmd(c, "/sources", "Show a source"), create, update)
	return cmd, c
}

// newPartnersCmd is `partnerhub partners list|get|create`.
func newPartnersCmd(getenv func(string) string, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "partners", Short: "List and create partners"}
	cmd.SetOut(stdout)
	c := newAPIClient(cmd, getenv, stdout)
	cols := []column{{"ID", "id"}, {"CODE", "code"}, {"NAME", "name"}, {"EMAIL", "email"}, {"TAGS", "tags"}, {"CREATED", "created_at"}}
	var name, code, email string
	var tags []string
	create := &cobra.Command{
		Use:   "create --name … --code …",
		Short: "Create a partner; its referral link is /r/CODE",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := map[string]any{"name": name, "code": code, "email": email, "tags": tags}
			_, raw, err := c.call(cmd.Context(), http.MethodPost, "/partners", nil, body, nil)
			if err != nil {
				return err
			}
			return c.printItem(raw, "id", "code", "name", "email")
		},
	}
	create.Flags().StringVar(&name, "name", "", "the partner's name")
	create.Flags().StringVar(&code, "code", "", "the partner's code (referral links, client_reference_id)")
	create.Flags().StringVar(&email, "email", "", "the partner's email (self-referral checks)")
	create.Flags().StringSliceVar(&tags, "tag", nil, "a tag for commission rules (repeatable)")
	cmd.AddCommand(listCmd(c, "/partners", "List partners", cols), getCmd(c, "/partners", "Show a partner"), create)
	return cmd
}

// newKeysCmd is `partnerhub keys list|create|revoke`.
func newKeysCmd(getenv func(string) string, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage API keys (admin)"}
	cmd.SetOut(stdout)
	c := newAPIClient(cmd, getenv, stdout)
	cols := []column{{"ID", "id"}, {"PREFIX", "prefix"}, {"NAME", "name"}, {"ROLE", "role"}, {"PARTNER", "partner_id"},
		{"CREATED", "created_at"}, {"REVOKED", "revoked_at"}}
	var name, role, partner string
	create := &cobra.Command{
		Use:   "create --name … --role admin|ops|viewer|partner [--partner ptn_…]",
		Short: "Create an API key; the key is printed once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := map[string]any{"name": name, "role": role, "partner_id": partner}
			_, raw, err := c.call(cmd.Context(), http.MethodPost, "/api-keys", nil, body, nil)
			if err != nil {
				return err
			}
			if err := c.printItem(raw, "id", "name", "role", "partner_id", "key"); err != nil {
				return err
			}
			if !c.isJSON() {
				fmt.Fprintln(c.out, "The key is shown only now: store it.")
			}
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "who or what uses the key")
	create.Flags().StringVar(&role, "role", "", "admin, ops, viewer or partner")
	create.Flags().StringVar(&partner, "partner", "", "the partner a partner key speaks for")
	revoke := &cobra.Command{
		Use:   "revoke KEY_ID",
		Short: "Revoke an API key at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, raw, err := c.call(cmd.Context(), http.MethodDelete, "/api-keys/"+url.PathEscape(args[0]), nil, nil, nil)
			if err != nil {
				return err
			}
			return c.printItem(raw, "id", "name", "role", "revoked_at")
		},
	}
	cmd.AddCommand(listCmd(c, "/api-keys", "List API keys (never their secrets)", cols), create, revoke)
	return cmd
}

// newReportsCmd is `partnerhub reports partners`.
func newReportsCmd(getenv func(string) string, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "reports", Short: "Partner reports as a table, JSON or CSV"}
	cmd.SetOut(stdout)
	c := newAPIClient(cmd, getenv, stdout)
	var since, until, partner string
	partners := &cobra.Command{
		Use:   "partners [--since 30d] [--partner ptn_…] [-o table|json|csv]",
		Short: "Per partner and currency: conversions, revenue and commissions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if err := setTimes(q, since, until); err != nil {
				return err
			}
			if partner != "" {
				q.Set("partner_id", partner)
			}
			if c.output == "csv" {
				q.Set("format", "csv")
				_, raw, err := c.call(cmd.Context(), http.MethodGet, "/reports/partners", q, nil, nil)
				if err != nil {
					return err
				}
				_, err = c.out.Write(raw)
				return err
			}
			var rep struct {
				Data []map[string]any `json:"data"`
			}
			_, raw, err := c.call(cmd.Context(), http.MethodGet, "/reports/partners", q, nil, &rep)
			if err != nil {
				return err
			}
			if c.isJSON() {
				c.printJSON(raw)
				return nil
			}
			return printTable(c.out, flattenReport(rep.Data), reportColumns)
		},
	}
	partners.Flags().StringVar(&since, "since", "", "from: RFC 3339 time or a duration back from now (30d)")
	partners.Flags().StringVar(&until, "until", "", "to (exclusive)")
	partners.Flags().StringVar(&partner, "partner", "", "one partner")
	cmd.AddCommand(partners)
	return cmd
}

// reportColumns are the columns of a partner report's table: one row per
// partner and currency.
var reportColumns = []column{{"PARTNER", "partner_code"}, {"NAME", "partner_name"}, {"CLICKS", "clicks"},
	{"CURRENCY", "currency"}, {"CONVERSIONS", "conversions"}, {"REVENUE", "revenue_minor"}, {"REFUNDED", "refunded_minor"},
	{"PENDING", "commissions.pending_minor"}, {"APPROVED", "commissions.approved_minor"}, {"PAID", "commissions.paid_minor"},
	{"NET COMMISSION", "commissions.net_minor"}}

// formatMoney shows the *_minor amounts of m (and of its nested objects)
// in the currency's major unit, exactly: 5000 USD → 50.00.
func formatMoney(m map[string]any, currency string) {
	for k, v := range m {
		switch x := v.(type) {
		case float64:
			if strings.HasSuffix(k, "_minor") {
				m[k] = hub.FormatMinor(int64(x), currency)
			}
		case map[string]any:
			y := make(map[string]any, len(x))
			for kk, vv := range x {
				y[kk] = vv
			}
			formatMoney(y, currency)
			m[k] = y
		}
	}
}

// flattenReport turns each partner's per-currency lines into rows.
func flattenReport(partners []map[string]any) []map[string]any {
	var rows []map[string]any
	for _, p := range partners {
		curs, _ := p["currencies"].([]any)
		if len(curs) == 0 {
			rows = append(rows, p)
		}
		for _, cu := range curs {
			row := map[string]any{}
			for k, v := range p {
				row[k] = v
			}
			if m, ok := cu.(map[string]any); ok {
				for k, v := range m {
					row[k] = v
				}
			}
			formatMoney(row, fmt.Sprint(row["currency"]))
			rows = append(rows, row)
		}
	}
	return rows
}

// newInboundCmd is `partnerhub inbound list|get|reprocess`.
func newInboundCmd(getenv func(string) string, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "inbound", Short: "Inbound webhooks: list by status, show one, reprocess after a fix"}
	cmd.SetOut(stdout)
	c := newAPIClient(cmd, getenv, stdout)
	cols := []column{{"ID", "id"}, {"STATUS", "status"}, {"PROVIDER", "provider"}, {"TYPE", "event_type"},
		{"SOURCE", "source_id"}, {"ATTEMPTS", "attempts"}, {"RECEIVED", "received_at"}, {"ERROR", "last_error"}}
	var status, provider, source, since, until string
	reprocess := &cobra.Command{
		Use:   "reprocess [INBOUND_EVENT_ID]",
		Short: "Process one inbound event again, or every one matching the filters (default: failed)",
		Long: `Process one inbound event again, or, without an id, every inbound event that
matches the filters (status failed unless --status says otherwise), oldest
first, in calls of up to 10,000 until none is left. Processing is
idempotent: an event already applied books no money twice.`,
		Example: `  partnerhub inbound reprocess inb_01J…
  partnerhub inbound reprocess --status failed --provider stripe --since 24h`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if len(args) == 1 {
				_, raw, err := c.call(ctx, http.MethodPost, "/inbound-events/"+url.PathEscape(args[0])+"/reprocess", nil, nil, nil)
				if err != nil {
					return err
				}
				return c.printItem(raw, "id", "status", "provider", "event_type")
			}
			q := url.Values{}
			if err := setTimes(q, since, until); err != nil {
				return err
			}
			body := map[string]any{"status": status, "provider": provider, "source_id": source,
				"since": q.Get("since"), "until": q.Get("until")}
			total := 0
			for {
				var out struct {
					Requeued   int    `json:"requeued"`
					More       bool   `json:"more"`
					NextCursor string `json:"next_cursor"`
				}
				_, raw, err := c.call(ctx, http.MethodPost, "/inbound-events/reprocess", nil, body, &out)
				if err != nil {
					return err
				}
				total += out.Requeued
				if c.isJSON() {
					c.printJSON(raw)
				}
				if !out.More {
					break
				}
				body["cursor"] = out.NextCursor
			}
			if !c.isJSON() {
				fmt.Fprintf(c.out, "requeued %d inbound events\n", total)
			}
			return nil
		},
	}
	f := reprocess.Flags()
	f.StringVar(&status, "status", "", "failed (the default), ignored or processed")
	f.StringVar(&provider, "provider", "", "only this provider's events")
	f.StringVar(&source, "source", "", "only this source's events")
	f.StringVar(&since, "since", "", "received at or after: RFC 3339 time or a duration back from now (24h, 3d)")
	f.StringVar(&until, "until", "", "received before")
	cmd.AddCommand(listCmd(c, "/inbound-events", "List inbound webhooks, newest first", cols, "status"),
		getCmd(c, "/inbound-events", "Show an inbound webhook with what it produced"), reprocess)
	return cmd
}

// newSourcesBackfillCmd is `partnerhub sources backfill SOURCE_ID`.
func newSourcesBackfillCmd(c *apiClient) *cobra.Command {
	var since string
	cmd := &cobra.Command{
		Use:   "backfill SOURCE_ID [--since 72h]",
		Short: "Fetch what the provider failed to deliver (Stripe, Paddle, WooCommerce) and ingest it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if err := setTimes(q, since, ""); err != nil {
				return err
			}
			body := map[string]any{}
			if s := q.Get("since"); s != "" {
				body["since"] = s
			}
			for {
				var out struct {
					Fetched    int  `json:"fetched"`
					Ingested   int  `json:"ingested"`
					Duplicates int  `json:"duplicates"`
					More       bool `json:"more"`
				}
				_, raw, err := c.call(cmd.Context(), http.MethodPost, "/sources/"+url.PathEscape(args[0])+"/backfill", nil, body, &out)
				if err != nil {
					return err
				}
				if c.isJSON() {
					c.printJSON(raw)
				} else {
					fmt.Fprintf(c.out, "fetched %d, ingested %d new, %d already received\n", out.Fetched, out.Ingested, out.Duplicates)
				}
				if !out.More {
					return nil
				}
				delete(body, "since") // the source's cursor carries on
			}
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "start from: RFC 3339 time or a duration back from now (72h)")
	return cmd
}

// endpointsListCmd is `partnerhub endpoints list`.
func endpointsListCmd(c *apiClient) *cobra.Command {
	return listCmd(c, "/endpoints", "List webhook endpoints with their state", []column{{"ID", "id"}, {"URL", "url"},
		{"ENABLED", "enabled"}, {"PARTNER", "partner_id"}, {"EVENT TYPES", "event_types"}, {"DISABLED BECAUSE", "disabled_reason"}})
}

// endpointsCreateCmd is `partnerhub endpoints create`.
func endpointsCreateCmd(c *apiClient) *cobra.Command {
	var u, desc, partner string
	var types []string
	cmd := &cobra.Command{
		Use:   "create --url https://… [--event-type 'commission.*'] [--partner ptn_…]",
		Short: "Create a webhook endpoint; its whsec_ signing secret is printed once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := map[string]any{"url": u, "description": desc}
			if len(types) > 0 {
				body["event_types"] = types
			}
			if partner != "" {
				body["partner_id"] = partner
			}
			_, raw, err := c.call(cmd.Context(), http.MethodPost, "/endpoints", nil, body, nil)
			if err != nil {
				return err
			}
			if err := c.printItem(raw, "id", "url", "partner_id", "event_types", "secret"); err != nil {
				return err
			}
			if !c.isJSON() {
				fmt.Fprintln(c.out, "The secret is shown only now: store it where your receiver reads it.")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&u, "url", "", "the receiver's http(s) URL")
	f.StringVar(&desc, "description", "", "what the endpoint is for")
	f.StringArrayVar(&types, "event-type", nil, `event type or category such as "commission.*" (repeatable; default all)`)
	f.StringVar(&partner, "partner", "", "deliver only this partner's events")
	return cmd
}
