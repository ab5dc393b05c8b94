package connectors

// SetupSteps returns the steps that connect a provider's webhooks to a
// source at webhookURL: where to paste the URL, which events to enable,
// and where the signing secret is. It returns nil for an unknown
// provider.
func SetupSteps(provider, webhookURL string) []string {
	switch provider {
	case "stripe":
		return []string{
			"Fastest: run `partnerhub sources connect stripe --api-key sk_…`; it registers this URL with Stripe and stores the signing secret.",
			"Or by hand: in the Stripe Dashboard open Developers → Webhooks → Add endpoint and paste " + webhookURL,
			"Select the events checkout.session.completed, checkout.session.async_payment_succeeded, invoice.paid, invoice_payment.paid, charge.refunded, refund.created, refund.updated, refund.failed, charge.dispute.created, charge.dispute.updated, charge.dispute.closed, charge.dispute.funds_withdrawn and charge.dispute.funds_reinstated.",
			"Reveal the endpoint's Signing secret (whsec_…) and store it: `partnerhub sources update <id> --secret whsec_…` (PATCH /api/v1/sources/{id}).",
			"Check: `partnerhub trigger checkout.session.completed --source <id>`, then the source's last_verified_at is set.",
		}
	case "shopify":
		return []string{
			"In the Shopify admin open Settings → Notifications → Webhooks (or your app's webhook subscriptions) and create webhooks in JSON format for orders/create, orders/paid, orders/updated, orders/cancelled, refunds/create, disputes/create and disputes/update, each with the URL " + webhookURL,
			"Apps also subscribe the compliance topics customers/data_request, customers/redact and shop/redact to the same URL.",
			"The secret is the signing key shown under the webhooks list (\"Your webhooks will be signed with …\"), or your app's client secret; store it with `partnerhub sources update <id> --secret …`.",
			"If your prices include tax, set the option taxes_included=true.",
		}
	case "woocommerce":
		return []string{
			"In WordPress open WooCommerce → Settings → Advanced → Webhooks → Add webhook: status Active, topic Order created, API version WP REST API Integration v3, delivery URL " + webhookURL,
			"Use this source's secret as the webhook Secret (or copy WooCommerce's back with `partnerhub sources update <id> --secret …`). Add webhooks with the same URL and secret for Order updated, Order deleted and Order restored.",
			"Recommended: create a Read REST API key (WooCommerce → Settings → Advanced → REST API) and store it as credentials consumer_key / consumer_secret with the option store_url, so missed deliveries are reconciled.",
		}
	case "paddle":
		return []string{
			"In Paddle open Developer tools → Notifications → New destination: type Webhook, URL " + webhookURL + ", usage type Platform.",
			"Select transaction.paid, transaction.completed, adjustment.created and adjustment.updated, and save.",
			"Edit the destination, copy its Secret key (pdl_ntfset_…) and store it with `partnerhub sources update <id> --secret …`. For a sandbox account set the option sandbox=true.",
			"For backfill after an outage, store an API key as the credential api_key.",
		}
	case "paddle_classic":
		return []string{
			"In the Paddle Classic dashboard open Developer Tools → Alerts / Webhooks and set the URL to " + webhookURL,
			"Enable payment_succeeded, subscription_payment_succeeded, payment_refunded, subscription_payment_refunded, payment_dispute_created and payment_dispute_closed.",
			"Copy your Public Key (Developer Tools → Public Key, the PEM block) into the source's secret.",
		}
	}
	return nil
}
