package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhookendpoint"
)

// stripeConnectEvents are the event types the Stripe connector reads
// (connectors/stripe.go) and `sources connect stripe` subscribes the
// endpoint to. invoice_payment.paid is left out: the endpoint is pinned to
// stripe.APIVersion, whose invoices still name their payment intent.
// payment_intent.succeeded is added with --payment-intents.
var stripeConnectEvents = []string{
	"checkout.session.completed",
	"checkout.session.async_payment_succeeded",
	"invoice.paid",
	"charge.refunded",
	"charge.refund.updated",
	"refund.created",
	"refund.updated",
	"refund.failed",
	"charge.dispute.created",
	"charge.dispute.updated",
	"charge.dispute.closed",
	"charge.dispute.funds_withdrawn",
	"charge.dispute.funds_reinstated",
}

// stripeConnectTimeout bounds the Stripe API call, retries included.
const stripeConnectTimeout = time.Minute

// newSourcesConnectCmd is `partnerhub sources connect stripe`; c is the
// sources command's API client.
func newSourcesConnectCmd(c *apiClient) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "connect PROVIDER",
		Short: "Create a source and register its webhook through the provider's API (stripe)",
	}
	var apiKey, name, apiBase string
	var paymentIntents bool
	st := &cobra.Command{
		Use:   "stripe --api-key sk_…",
		Short: "Create a Stripe source, register its webhook endpoint with Stripe and store the signing secret",
		Long: `Create a Stripe source, register its webhook URL as a Stripe webhook
endpoint (pinned to API version ` + stripe.APIVersion + `, subscribed to the events the Stripe
connector reads), and store the signing secret Stripe returns in the source.

The API key needs write access to webhook endpoints: a secret key (sk_…) or
a restricted key (rk_…) with "Webhook Endpoints: Write". It is used for this
one call and not stored. A test-mode key registers a test-mode endpoint.

If Stripe refuses, the source stays without an endpoint (and accepts no
webhooks, its secret being a random placeholder): fix the cause and connect
again, or set the secret of an endpoint made by hand with
'partnerhub sources update SOURCE_ID --secret whsec_… --drop-previous'.`,
		Example: `  STRIPE_API_KEY=sk_live_… partnerhub sources connect stripe --name "Stripe live"
  partnerhub sources connect stripe --api-key sk_test_… --payment-intents`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if apiKey == "" {
				apiKey = c.getenv("STRIPE_API_KEY")
			}
			if !strings.HasPrefix(apiKey, "sk_") && !strings.HasPrefix(apiKey, "rk_") {
				return errors.New("--api-key (or STRIPE_API_KEY) must be a Stripe secret key sk_… or restricted key rk_…")
			}
			return connectStripe(cmd.Context(), c, stripeConnect{key: apiKey, name: name, apiBase: apiBase, paymentIntents: paymentIntents})
		},
	}
	f := st.Flags()
	f.StringVar(&apiKey, "api-key", "", "Stripe secret or restricted key (default $STRIPE_API_KEY); not stored")
	f.StringVar(&name, "name", "", "a name for the source (default stripe)")
	f.BoolVar(&paymentIntents, "payment-intents", false, "also count payment_intent.succeeded (custom integrations without Checkout or Billing)")
	f.StringVar(&apiBase, "stripe-api-base", "", "base URL of the Stripe API (for tests against stripe-mock)")
	_ = f.MarkHidden("stripe-api-base")
	cmd.AddCommand(st)
	return cmd
}

type stripeConnect struct {
	key, name, apiBase string
	paymentIntents     bool
}

// stripeConnectResult is what `sources connect stripe --json` prints.
type stripeConnectResult struct {
	SourceID         string   `json:"source_id"`
	WebhookURL       string   `json:"webhook_url"`
	StripeEndpointID string   `json:"stripe_endpoint_id"`
	APIVersion       string   `json:"api_version"`
	EnabledEvents    []string `json:"enabled_events"`
	SecretStored     bool     `json:"secret_stored"`
}

func connectStripe(ctx context.Context, c *apiClient, in stripeConnect) error {
	events := append([]string(nil), stripeConnectEvents...)
	options := map[string]string{}
	if in.paymentIntents {
		events = append(events, "payment_intent.succeeded")
		options["payment_intent_succeeded"] = "true"
	}
	// Until Stripe returns the endpoint's secret, the source verifies with
	// a random one nobody knows: it accepts nothing.
	placeholder := placeholderSecret()
	var src struct {
		ID         string `json:"id"`
		WebhookURL string `json:"webhook_url"`
	}
	if _, _, err := c.call(ctx, http.MethodPost, "/sources", nil,
		map[string]any{"provider": "stripe", "name": in.name, "secret": placeholder, "options": options}, &src); err != nil {
		return fmt.Errorf("creating the source: %w", err)
	}
	if src.ID == "" || src.WebhookURL == "" {
		return errors.New("creating the source: the hub's answer names no source id or webhook URL")
	}

	cfg := &stripe.BackendConfig{
		HTTPClient:    &http.Client{Timeout: 30 * time.Second},
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
	}
	if in.apiBase != "" {
		cfg.URL = stripe.String(strings.TrimRight(in.apiBase, "/"))
	}
	client := webhookendpoint.Client{B: stripe.GetBackendWithConfig(stripe.APIBackend, cfg), Key: in.key}
	params := &stripe.WebhookEndpointParams{
		URL:           stripe.String(src.WebhookURL),
		EnabledEvents: stripe.StringSlice(events),
		APIVersion:    stripe.String(stripe.APIVersion),
		Description:   stripe.String("partnerhub source " + src.ID),
		Metadata:      map[string]string{"partnerhub_source_id": src.ID},
	}
	sctx, cancel := context.WithTimeout(ctx, stripeConnectTimeout)
	defer cancel()
	params.Context = sctx
	ep, err := client.New(params)
	if err != nil {
		return fmt.Errorf("registering the webhook endpoint with Stripe: %s\nsource %s was created without a Stripe endpoint (it accepts no webhooks until it has one): "+
			"fix the cause and connect again, or create the endpoint for %s by hand and run 'partnerhub sources update %s --secret whsec_… --drop-previous'",
			stripeErrorText(err), src.ID, src.WebhookURL, src.ID)
	}
	if !strings.HasPrefix(ep.Secret, "whsec_") {
		return fmt.Errorf("registering the webhook endpoint with Stripe: endpoint %s of source %s came back without its whsec_ signing secret: "+
			"reveal it in the Stripe Dashboard (Developers → Webhooks → the endpoint) and run 'partnerhub sources update %s --secret whsec_… --drop-previous'",
			ep.ID, src.ID, src.ID)
	}
	if _, _, err := c.call(ctx, http.MethodPatch, "/sources/"+url.PathEscape(src.ID), nil,
		map[string]any{"secret": ep.Secret, "keep_previous": false}, nil); err != nil {
		return fmt.Errorf("storing the signing secret of Stripe endpoint %s in source %s: %w\n"+
			"reveal the secret in the Stripe Dashboard (Developers → Webhooks → the endpoint) and run 'partnerhub sources update %s --secret whsec_… --drop-previous'",
			ep.ID, src.ID, err, src.ID)
	}
	res := stripeConnectResult{SourceID: src.ID, WebhookURL: src.WebhookURL, StripeEndpointID: ep.ID,
		APIVersion: stripe.APIVersion, EnabledEvents: events, SecretStored: true}
	if ep.APIVersion != "" {
		res.APIVersion = ep.APIVersion
	}
	if len(ep.EnabledEvents) > 0 {
		res.EnabledEvents = ep.EnabledEvents
	}
	if c.json {
		b, _ := json.Marshal(res)
		c.printJSON(b)
		return nil
	}
	printStripeConnect(c.out, &res)
	return nil
}

// placeholderSecret returns a random secret that nobody knows.
func placeholderSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "whsec_pending_" + base64.RawURLEncoding.EncodeToString(b)
}

func printStripeConnect(w io.Writer, r *stripeConnectResult) {
	fmt.Fprintf(w, "source:          %s\n", r.SourceID)
	fmt.Fprintf(w, "webhook URL:     %s\n", r.WebhookURL)
	fmt.Fprintf(w, "Stripe endpoint: %s (API version %s)\n", r.StripeEndpointID, r.APIVersion)
	fmt.Fprintf(w, "enabled events:  %s\n", strings.Join(r.EnabledEvents, ", "))
	fmt.Fprintln(w, "secret stored")
}

// stripeErrorText describes a stripe-go error: Stripe's message, code and
// status rather than the error's JSON.
func stripeErrorText(err error) string {
	var se *stripe.Error
	if !errors.As(err, &se) {
		return err.Error()
	}
	msg := se.Msg
	if msg == "" {
		msg = string(se.Type)
	}
	if se.Code != "" {
		msg += " (" + string(se.Code) + ")"
	}
	if se.HTTPStatusCode != 0 {
		msg += fmt.Sprintf(", HTTP %d", se.HTTPStatusCode)
	}
	return msg
}
