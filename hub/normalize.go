package hub

import "time"

// Normalizer turns a stored inbound event into canonical facts. Connectors
// implement it; the hub looks one up by provider.
type Normalizer interface {
	Normalize(src *Source, ev *InboundEvent) (*Normalized, error)
}

// NormalizerFunc adapts a function to Normalizer.
type NormalizerFunc func(src *Source, ev *InboundEvent) (*Normalized, error)

// Normalize calls f.
func (f NormalizerFunc) Normalize(src *Source, ev *InboundEvent) (*Normalized, error) {
	return f(src, ev)
}

// Normalized is what one provider event says, in canonical terms. At most
// one of Payment, Refund and Dispute is set; none with Ignored set.
type Normalized struct {
	// Livemode is false for provider test-mode events.
	Livemode bool `json:"livemode"`
	// Ignored, when not empty, says why the event moves nothing.
	Ignored string `json:"ignored,omitempty"`
	// Subject is the provider id of the payment or order the event is
	// about, and CustomerRef the provider's customer id, recorded on the
	// inbound event even when it is ignored, so a customer's data can be
	// found and erased.
	Subject     string       `json:"subject,omitempty"`
	CustomerRef string       `json:"customer_ref,omitempty"`
	Payment     *Payment     `json:"payment,omitempty"`
	Refund      *RefundFact  `json:"refund,omitempty"`
	Dispute     *DisputeFact `json:"dispute,omitempty"`
	// Snapshot carries an order's whole state, for providers whose
	// webhooks send state instead of events; Payment is set alongside it
	// when the order is paid in that state.
	Snapshot *Snapshot `json:"snapshot,omitempty"`
	// Link names more ids of a payment already known (Stripe's
	// invoice_payment.paid ties an invoice to its payment intent).
	Link *LinkFact `json:"link,omitempty"`
	// Redact asks to erase a customer's personal data (privacy law
	// requests such as Shopify's customers/redact).
	Redact *RedactFact `json:"redact,omitempty"`
}

// Snapshot is an order's whole state at At (its modification time). The
// hub applies the Payment that comes with it, then every refund in Refunds;
// refunds of earlier states missing from Refunds were deleted and are
// undone. A snapshot older than the newest one applied to the conversion is
// recorded and ignored, so a late delivery never undoes a refund.
type Snapshot struct {
	Keys    []string     `json:"keys"`
	At      time.Time    `json:"at"`
	Refunds []RefundFact `json:"refunds,omitempty"`
}

// LinkFact says that every key names one payment. It adds the keys as
// aliases of the conversion one of them names; until that conversion
// exists, processing the event fails with ErrWaitingForPayment and is
// retried.
type LinkFact struct {
	Keys []string `json:"keys"`
}

// RedactFact names the customer whose personal data is erased, and the
// payments (orders) of theirs to erase; Source erases every inbound body
// of the source (the shop is gone). Amounts and the ledger are kept.
type RedactFact struct {
	CustomerRef string   `json:"customer_ref,omitempty"`
	Subjects    []string `json:"subjects,omitempty"`
	Source      bool     `json:"source,omitempty"`
}

// Payment is a paid payment: it creates a conversion, or adds aliases and
// hints to the one its keys already name.
type Payment struct {
	// Keys are every provider id naming this payment (session, invoice,
	// payment intent, charge, order…). Never empty.
	Keys []string `json:"keys"`
	// Kind is KindNew, KindRenewal, or "" when the hub decides from the
	// subscription's history (first paid payment of a subscription is new).
	Kind           string     `json:"kind,omitempty"`
	Customer       Customer   `json:"customer"`
	BaseMinor      int64      `json:"base_minor"`
	GrossMinor     int64      `json:"gross_minor"`
	TaxMinor       int64      `json:"tax_minor"`
	Currency       string     `json:"currency"`
	Lines          []LineItem `json:"lines,omitempty"`
	Hints          Hints      `json:"hints"`
	SubscriptionID string     `json:"subscription_id,omitempty"`
	OccurredAt     time.Time  `json:"occurred_at"`
}

// RefundFact is a refund, as of OccurredAt.
type RefundFact struct {
	// Keys are the provider ids of the refunded payment; they become
	// aliases of its conversion.
	Keys       []string `json:"keys"`
	ExternalID string   `json:"external_id"`
	// Cumulative: AmountMinor is the running total refunded for the
	// payment, superseding earlier cumulative figures.
	Cumulative  bool  `json:"cumulative,omitempty"`
	AmountMinor int64 `json:"amount_minor"`
	// BaseMinor is the merchandise part when the provider gives the split;
	// nil means the hub prorates amount × base / gross.
	BaseMinor  *int64    `json:"base_minor,omitempty"`
	Currency   string    `json:"currency"`
	Status     string    `json:"status"`
	OccurredAt time.Time `json:"occurred_at"`
}

// DisputeFact is the state of a chargeback or inquiry as of OccurredAt.
// Status is one of DisputeInquiry, DisputeWithdrawn, DisputeReinstated,
// DisputeLost. Withdrawn and lost reverse the commission like a full
// refund; reinstated restores it; inquiry moves nothing.
type DisputeFact struct {
	Keys        []string  `json:"keys"`
	ExternalID  string    `json:"external_id"`
	Status      string    `json:"status"`
	Reason      string    `json:"reason,omitempty"`
	AmountMinor int64     `json:"amount_minor"`
	Currency    string    `json:"currency"`
	OccurredAt  time.Time `json:"occurred_at"`
}
