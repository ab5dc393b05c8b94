package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/partnerhub/partnerhub/connectors"
)

// newTriggerCmd is `partnerhub trigger EVENT --source SOURCE_ID`.
func newTriggerCmd(getenv func(string) string, stdout io.Writer) *cobra.Command {
	var in connectors.TriggerInput
	var source string
	var client *apiClient // set below, once cmd exists
	var events strings.Builder
	for _, p := range connectors.SampleProviders() {
		fmt.Fprintf(&events, "  %-12s %s\n", p, strings.Join(connectors.SampleEvents(p), ", "))
	}
	cmd := &cobra.Command{
		Use:   "trigger EVENT --source SOURCE_ID",
		Short: "Send a signed test event of the source's provider through its webhook path",
		Long: `Send a realistic test event of the source's provider to a running hub. The
hub builds the provider's payload with fresh ids, signs it with the source's
secret exactly as the provider does, and posts it to the source's /in path,
so verification, dedupe, storage and processing are those of a real webhook.

Events:
` + events.String() + `
A sale or subscription payment sells one item of --amount with no tax or
shipping, attributed by --partner-code when given. A refund or dispute takes
money back from --payment, the payment id an earlier trigger printed (else
from a new payment, and the refund waits for a sale that never comes).

Stripe events are test-mode events and Shopify orders test orders: their
conversions are flagged as test and never paid. WooCommerce and Paddle
Billing payloads have no test flag: on a source without the option
sandbox=true a triggered sale would count as a real one, so it is refused
unless --live confirms it.

Paddle Classic signs alerts with your private key, which the hub does not
have: send a test alert from the Paddle dashboard instead.`,
		Example: `  partnerhub trigger checkout.session.completed --source src_01J… --partner-code ALICE
  partnerhub trigger charge.refunded --source src_01J… --payment pi_3…
  partnerhub trigger orders/paid --source src_01J… --amount 129900 --currency jpy`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if source == "" {
				return errors.New("--source is required")
			}
			in.Event = args[0]
			var res connectors.TriggerResult
			_, raw, err := client.call(cmd.Context(), http.MethodPost, "/sources/"+url.PathEscape(source)+"/trigger", nil, in, &res)
			if err != nil {
				return err
			}
			if client.json {
				client.printJSON(raw)
			} else {
				printTriggerResult(client.out, &res)
			}
			if res.InboundStatus < 200 || res.InboundStatus > 299 {
				return fmt.Errorf("the source's webhook path answered %d: %s", res.InboundStatus, res.InboundError)
			}
			return nil
		},
	}
	cmd.SetOut(stdout) // help goes where the command's output goes
	client = newAPIClient(cmd, getenv, stdout)
	f := cmd.Flags()
	f.StringVar(&source, "source", "", "the source to send the event to (required)")
	f.StringVar(&in.PartnerCode, "partner-code", "", "partner code (or clk_ click id) the checkout carries")
	f.Int64Var(&in.AmountMinor, "amount", 0, fmt.Sprintf("amount in minor units (default %d)", connectors.SampleDefaultAmountMinor))
	f.StringVar(&in.Currency, "currency", "", "ISO 4217 currency code (default "+connectors.SampleDefaultCurrency+")")
	f.StringVar(&in.Email, "email", "", "buyer's email address (default "+connectors.SampleDefaultEmail+")")
	f.StringVar(&in.PaymentID, "payment", "", "refunds and disputes: the payment id an earlier trigger printed")
	f.BoolVar(&in.Live, "live", false, "send to a live WooCommerce or Paddle source anyway (the event counts as a real sale)")
	return cmd
}

func printTriggerResult(w io.Writer, r *connectors.TriggerResult) {
	mode := "live mode"
	if !r.Livemode {
		mode = "test mode"
	}
	fmt.Fprintf(w, "sent %s %s to %s (%s)\n", r.Provider, r.Event, r.SourceID, mode)
	fmt.Fprintf(w, "  event id:   %s\n", r.EventID)
	if r.Kind == "payment" {
		fmt.Fprintf(w, "  payment id: %s (refund or dispute it with --payment %s)\n", r.PaymentID, r.PaymentID)
	} else {
		fmt.Fprintf(w, "  payment id: %s\n", r.PaymentID)
	}
	switch {
	case r.InboundStatus >= 200 && r.InboundStatus <= 299 && r.Duplicate:
		fmt.Fprintf(w, "  /in answered %d: duplicate of inbound event %s\n", r.InboundStatus, r.InboundEventID)
	case r.InboundStatus >= 200 && r.InboundStatus <= 299:
		fmt.Fprintf(w, "  /in answered %d: stored as inbound event %s, processing now\n", r.InboundStatus, r.InboundEventID)
	default:
		fmt.Fprintf(w, "  /in answered %d: %s\n", r.InboundStatus, r.InboundError)
	}
	if r.Livemode {
		fmt.Fprintln(w, "  note: this source is live: the event counts as a real one (set the source option sandbox=true for test sources)")
	}
}
