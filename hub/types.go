package hub

import (
	"encoding/json"
	"time"
)

// DefaultProgramID is the program created by the first migration. Single
// merchant deployments never need another.
const DefaultProgramID = "prg_default"

// Program is one merchant's partner program. Every other row belongs to one.
type Program struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// DefaultCommissionBPS is the commission rate in basis points
	// (1000 = 10 %) applied to conversions' commission base.
	DefaultCommissionBPS int64 `json:"default_commission_bps"`
	// HoldDays is how long a commission stays pending before approval.
	HoldDays int `json:"hold_days"`
	ProgramSettings
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Attribution sources, in the order a program may try them.
const (
	SourceClick       = "click"
	SourcePartnerCode = "partner_code"
	SourcePromoCode   = "promo_code"
	SourceCustomer    = "customer"
)

// ProgramSettings are a program's attribution and payout settings. Zero
// values mean the defaults the accessors return.
type ProgramSettings struct {
	// CookieDays is the referral window: a click older than this does not
	// count, and the click cookie lasts as long. Zero: 60.
	CookieDays int `json:"cookie_days,omitempty"`
	// AttributionOrder is the order hints are tried in. Empty: click,
	// partner_code, promo_code, customer.
	AttributionOrder []string `json:"attribution_order,omitempty"`
	// TouchModel picks among several clicks of one customer: "last" or
	// "first". Empty: "last".
	TouchModel string `json:"touch_model,omitempty"`
	// LifetimeMonths is how long a customer stays bound to the partner of
	// their first conversion. Zero: forever.
	LifetimeMonths int `json:"lifetime_months,omitempty"`
	// DestinationURL is where referral links send visitors by default.
	DestinationURL string `json:"destination_url,omitempty"`
	// AllowedHosts are the hosts referral links may redirect to (the
	// destination's host is always allowed).
	AllowedHosts []string `json:"allowed_hosts,omitempty"`
	// MinPayoutMinor is the smallest approved balance paid out, per
	// currency (ISO code → minor units). Missing: no minimum.
	MinPayoutMinor map[string]int64 `json:"min_payout_minor,omitempty"`
}

// Cookie returns the referral window.
func (s ProgramSettings) Cookie() time.Duration {
	d := s.CookieDays
	if d <= 0 {
		d = 60
	}
	return time.Duration(d) * 24 * time.Hour
}

// Order returns the attribution order.
func (s ProgramSettings) Order() []string {
	if len(s.AttributionOrder) == 0 {
		return []string{SourceClick, SourcePartnerCode, SourcePromoCode, SourceCustomer}
	}
	return s.AttributionOrder
}

// FirstTouch reports whether the first click of several wins.
func (s ProgramSettings) FirstTouch() bool { return s.TouchModel == "first" }

// Source is one connection to a billing platform: a provider, the secret its
// webhooks are signed with, and provider-specific options.
type Source struct {
	ID        string `json:"id"`
	ProgramID string `json:"program_id"`
	Provider  string `json:"provider"`
	Name      string `json:"name"`
	// Secret verifies inbound signatures. Stored encrypted, never returned.
	Secret string `json:"-"`
	// PreviousSecret is still accepted during a secret rotation.
	PreviousSecret string `json:"-"`
	// Options holds provider-specific settings, e.g.
	// {"payment_intent_succeeded": "true"} for Stripe.
	Options map[string]string `json:"options"`
	// Credentials are REST API credentials for reconciliation (e.g.
	// WooCommerce's consumer_key and consumer_secret). Stored encrypted,
	// never returned.
	Credentials map[string]string `json:"-"`
	// Cursor is the reconciliation poll's position.
	Cursor string `json:"reconcile_cursor,omitempty"`
	// Health is what the last reconciliation found wrong with the source
	// (for example a disabled provider webhook), or "".
	Health string `json:"health,omitempty"`
	// LastVerifiedAt is when the source last received a webhook whose
	// signature verified; LastFailure and LastFailureAt say why and when
	// one was last refused.
	LastVerifiedAt *time.Time `json:"last_verified_at"`
	LastFailureAt  *time.Time `json:"last_failure_at"`
	LastFailure    string     `json:"last_failure,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
}

// Option returns a source option or "".
func (s *Source) Option(name string) string {
	if s == nil || s.Options == nil {
		return ""
	}
	return s.Options[name]
}

// Inbound event statuses.
const (
	InboundReceived  = "received"  // stored, waiting for hub:process
	InboundProcessed = "processed" // normalized and applied
	InboundIgnored   = "ignored"   // verified, but moves nothing
	InboundFailed    = "failed"    // could not be normalized; reprocessable
)

// InboundEvent is one verified provider webhook, stored before it is
// acknowledged. Body is the raw request body, exactly as signed.
type InboundEvent struct {
	ID        string `json:"id"`
	ProgramID string `json:"program_id"`
	SourceID  string `json:"source_id"`
	Provider  string `json:"provider"`
	// DedupeKey is the provider's event id (or a body hash); unique per
	// source.
	DedupeKey string `json:"dedupe_key"`
	EventType string `json:"event_type"`
	// Headers holds the request headers that matter for normalization
	// (topic, shop domain…); never signature headers.
	Headers    map[string]string `json:"headers,omitempty"`
	Body       []byte            `json:"-"`
	Status     string            `json:"status"`
	Attempts   int               `json:"attempts"`
	LastError  string            `json:"last_error,omitempty"`
	ReceivedAt time.Time         `json:"received_at"`
	// ProcessedAt is set once the event reaches a final status.
	ProcessedAt *time.Time `json:"processed_at,omitempty"`
	// BodyPurgedAt is when retention erased Body and Headers; nil while
	// they are kept.
	BodyPurgedAt *time.Time `json:"body_purged_at,omitempty"`
}

// Receipt is what a connector learns while verifying a request.
type Receipt struct {
	DedupeKey string
	EventType string
	Headers   map[string]string
}

// Conversion kinds.
const (
	KindNew     = "new"
	KindRenewal = "renewal"
)

// Conversion is one paid payment, whatever number of provider events and
// ids describe it.
type Conversion struct {
	ID        string `json:"id"`
	ProgramID string `json:"program_id"`
	SourceID  string `json:"source_id"`
	Provider  string `json:"provider"`
	// Keys are the provider ids that name this payment (key aliases).
	Keys     []string `json:"keys"`
	Kind     string   `json:"kind"`
	Livemode bool     `json:"livemode"`
	Customer Customer `json:"customer"`
	// BaseMinor is the commission base, fixed at the first paid event.
	BaseMinor      int64      `json:"base_minor"`
	GrossMinor     int64      `json:"gross_minor"`
	TaxMinor       int64      `json:"tax_minor"`
	Currency       string     `json:"currency"`
	Lines          []LineItem `json:"lines,omitempty"`
	Hints          Hints      `json:"hints"`
	PartnerID      string     `json:"partner_id,omitempty"`
	AttributedBy   string     `json:"attribution_reason,omitempty"`
	SubscriptionID string     `json:"subscription_id,omitempty"`
	// RefundedMinor and RefundedBaseMinor are the current totals of
	// refunds and chargebacks counted against the conversion.
	RefundedMinor     int64 `json:"refunded_minor"`
	RefundedBaseMinor int64 `json:"refunded_base_minor"`
	// StateAt is the modification time of the newest order state applied
	// (providers whose webhooks carry state, such as WooCommerce).
	StateAt    *time.Time `json:"state_at,omitempty"`
	OccurredAt time.Time  `json:"occurred_at"`
	ReceivedAt time.Time  `json:"received_at"`
}

// Customer identifies the buyer without storing personal data.
type Customer struct {
	ProviderCustomerID string `json:"provider_customer_id,omitempty"`
	EmailHash          string `json:"email_hash,omitempty"`
}

// LineItem is one purchased line, where the payload has them.
type LineItem struct {
	ProductID   string `json:"product_id,omitempty"`
	PriceID     string `json:"price_id,omitempty"`
	Quantity    int64  `json:"quantity"`
	AmountMinor int64  `json:"amount_minor"`
}

// Hints are attribution clues carried by provider events. Hints of every
// event of one conversion are merged.
type Hints struct {
	ClickID     string   `json:"click_id,omitempty"`
	PartnerCode string   `json:"partner_code,omitempty"`
	PromoCodes  []string `json:"promo_codes,omitempty"`
}

// Merge fills h's empty fields from o and unions promo codes. Values
// already present win: the earliest event's hints are kept.
func (h Hints) Merge(o Hints) Hints {
	if h.ClickID == "" {
		h.ClickID = o.ClickID
	}
	if h.PartnerCode == "" {
		h.PartnerCode = o.PartnerCode
	}
	for _, c := range o.PromoCodes {
		seen := false
		for _, x := range h.PromoCodes {
			if x == c {
				seen = true
				break
			}
		}
		if !seen {
			h.PromoCodes = append(h.PromoCodes, c)
		}
	}
	return h
}

// Refund kinds.
const (
	RefundKindRefund             = "refund"
	RefundKindChargeback         = "chargeback"
	RefundKindChargebackReversal = "chargeback_reversal"
)

// Refund statuses. A refund counts against its conversion unless it is
// failed or canceled; a chargeback counts while withdrawn (or lost).
const (
	RefundPending   = "pending"
	RefundSucceeded = "succeeded"
	RefundFailed    = "failed"
	RefundCanceled  = "canceled"
	// RefundAwaiting is a refund requested but not yet approved (Paddle's
	// pending_approval): it moves no money until approved.
	RefundAwaiting = "awaiting_approval"
	// RefundReversed is a refund undone after it moved money.
	RefundReversed    = "reversed"
	DisputeInquiry    = "inquiry"    // no money moved
	DisputeWithdrawn  = "withdrawn"  // funds taken from the merchant
	DisputeReinstated = "reinstated" // funds returned (won)
	DisputeLost       = "lost"       // funds stay withdrawn
)

// Refund is a refund or a chargeback of a conversion. ConversionID is empty
// while the refund is parked, waiting for its sale.
type Refund struct {
	ID           string `json:"id"`
	ProgramID    string `json:"program_id"`
	SourceID     string `json:"source_id"`
	ConversionID string `json:"conversion_id,omitempty"`
	Provider     string `json:"provider"`
	// ExternalID is the provider's id of the refund (re_…, dp_…), or, for
	// a cumulative figure, the id of the payment it is cumulative for.
	ExternalID string `json:"external_id"`
	// OriginalKeys are the provider ids of the refunded payment.
	OriginalKeys []string `json:"original_keys"`
	Kind         string   `json:"kind"`
	// Cumulative marks an amount that is the running total refunded for a
	// payment (Stripe charge.refunded), not one refund.
	Cumulative  bool  `json:"cumulative"`
	AmountMinor int64 `json:"amount_minor"`
	// BaseMinor is the part of the refund in commission-base terms; nil
	// when the connector cannot tell and the hub prorates.
	BaseMinor  *int64    `json:"base_amount_minor,omitempty"`
	Currency   string    `json:"currency"`
	Status     string    `json:"status"`
	OccurredAt time.Time `json:"occurred_at"`
	CreatedAt  time.Time `json:"created_at"`
}

// Counts reports whether the refund currently moves money back.
func (r *Refund) Counts() bool {
	switch r.Status {
	case RefundFailed, RefundCanceled, RefundAwaiting, RefundReversed, DisputeInquiry, DisputeReinstated:
		return false
	}
	return true
}

// Partner is an affiliate, reseller or creator credited with conversions.
type Partner struct {
	ID        string `json:"id"`
	ProgramID string `json:"program_id"`
	Name      string `json:"name"`
	Email     string `json:"email,omitempty"`
	Code      string `json:"code"`
	// Tags group partners for commission rules.
	Tags      []string  `json:"tags,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Commission statuses.
const (
	CommissionPending = "pending"
	// CommissionHeld waits for an operator's review (a self-referral) and
	// is never approved by the hold timer.
	CommissionHeld = "held"
	// CommissionVoid was replaced when an operator re-attributed its
	// conversion; its entries net to zero unless it had been paid.
	CommissionVoid     = "void"
	CommissionApproved = "approved"
	CommissionPaid     = "paid"
)

// Commission is what a partner earns on one conversion. Its amount is the
// sum of its ledger entries.
type Commission struct {
	ID           string `json:"id"`
	ProgramID    string `json:"program_id"`
	ConversionID string `json:"conversion_id"`
	PartnerID    string `json:"partner_id"`
	Status       string `json:"status"`
	RateBPS      int64  `json:"rate_bps"`
	Currency     string `json:"currency"`
	// Test commissions come from provider test mode and are never paid.
	Test bool `json:"test"`
	// Terms record the rule and why the amount is what it is.
	Terms CommissionTerms `json:"terms"`
	// NetMinor is the sum of the entries.
	NetMinor  int64         `json:"net_minor"`
	Entries   []LedgerEntry `json:"entries,omitempty"`
	HoldUntil time.Time     `json:"hold_until"`
	CreatedAt time.Time     `json:"created_at"`
}

// Ledger entry types.
const (
	EntryEarned   = "earned"
	EntryReversal = "reversal"
	EntryRestore  = "restore"
	// EntryAdjusted moves a paid commission (a refund after payment); it
	// is carried to the partner's next payout.
	EntryAdjusted = "adjusted"
	// EntryVoid reverses what a commission still carries when an operator
	// re-attributes its conversion.
	EntryVoid = "void"
)

// LedgerEntry is one immutable movement of a commission. Key is unique per
// commission, so replaying an event books nothing twice.
type LedgerEntry struct {
	ID           string    `json:"id"`
	ProgramID    string    `json:"program_id"`
	CommissionID string    `json:"commission_id"`
	Key          string    `json:"key"`
	Type         string    `json:"type"`
	AmountMinor  int64     `json:"amount_minor"`
	Currency     string    `json:"currency"`
	CreatedAt    time.Time `json:"created_at"`
}

// Endpoint receives signed partner-event webhooks.
type Endpoint struct {
	ID          string `json:"id"`
	ProgramID   string `json:"program_id"`
	URL         string `json:"url"`
	Description string `json:"description,omitempty"`
	// EventTypes filters events; empty means every type.
	EventTypes []string `json:"event_types,omitempty"`
	// PartnerID scopes the endpoint to one partner's events.
	PartnerID string `json:"partner_id,omitempty"`
	// Secret is "whsec_" + base64; stored encrypted, shown once.
	Secret string `json:"-"`
	// PreviousSecret still signs, alongside Secret, until
	// PreviousSecretUntil (a rotation's grace period).
	PreviousSecret      string     `json:"-"`
	PreviousSecretUntil *time.Time `json:"previous_secret_until,omitempty"`
	EndpointSettings
	Enabled bool `json:"enabled"`
	// DisabledReason says why the endpoint was disabled ("410 Gone",
	// "failing since …", "by an operator").
	DisabledReason string `json:"disabled_reason,omitempty"`
	// FailingSince is when the endpoint's current run of failures began.
	FailingSince *time.Time `json:"failing_since,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
}

// EndpointSettings tune deliveries to one endpoint. Zero values mean the
// dispatcher's defaults.
type EndpointSettings struct {
	// Headers are sent with every delivery (never the signature headers).
	Headers map[string]string `json:"headers,omitempty"`
	// RateLimit is the most deliveries per second; 0 is unlimited.
	RateLimit int `json:"rate_limit,omitempty"`
	// TimeoutMS bounds one attempt; 0 is the dispatcher's default.
	TimeoutMS int `json:"timeout_ms,omitempty"`
	// MaxInFlight bounds concurrent attempts; 0 is the dispatcher's
	// default.
	MaxInFlight int `json:"max_in_flight,omitempty"`
	// Operations marks an endpoint of the merchant's operations team: it
	// receives endpoint.disabled events of the program.
	Operations bool `json:"operations,omitempty"`
}

// Signing returns the secrets a delivery at now is signed with: the
// current one, and the previous one during its grace period.
func (e *Endpoint) Signing(now time.Time) []string {
	out := []string{e.Secret}
	if e.PreviousSecret != "" && e.PreviousSecretUntil != nil && now.Before(*e.PreviousSecretUntil) {
		out = append(out, e.PreviousSecret)
	}
	return out
}

// Accepts reports whether the endpoint subscribes to an event of type t
// concerning partnerID ("" for program-wide events). endpoint.disabled
// goes only to endpoints marked Operations.
func (e *Endpoint) Accepts(t, partnerID string) bool {
	if !e.Enabled {
		return false
	}
	if e.PartnerID != "" && e.PartnerID != partnerID {
		return false
	}
	// endpoint.disabled is operations news: it goes to the program's
	// operations endpoints, whatever their type filter, and to no other.
	if t == EventEndpointDisabled {
		return e.Operations
	}
	if len(e.EventTypes) == 0 {
		return true
	}
	for _, p := range e.EventTypes {
		if p == t || p == "*" {
			return true
		}
		if n := len(p); n > 2 && p[n-2:] == ".*" && len(t) > n-1 && t[:n-1] == p[:n-1] {
			return true
		}
	}
	return false
}

// Event is one outbound partner event; its ID is the webhook-id receivers
// dedupe on.
type Event struct {
	ID        string          `json:"id"`
	ProgramID string          `json:"program_id"`
	Type      string          `json:"type"`
	PartnerID string          `json:"partner_id,omitempty"`
	Data      json.RawMessage `json:"data"`
	CreatedAt time.Time       `json:"created_at"`
}

// Delivery statuses.
const (
	DeliveryPending   = "pending"
	DeliverySucceeded = "succeeded"
	DeliveryFailed    = "failed"
)

// Delivery is one event to one endpoint. The row owns the retry state.
type Delivery struct {
	ID            string     `json:"id"`
	ProgramID     string     `json:"program_id"`
	EventID       string     `json:"event_id"`
	EndpointID    string     `json:"endpoint_id"`
	EventType     string     `json:"event_type"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	// AttemptLog is filled by list calls that include attempts.
	AttemptLog []Attempt `json:"attempts_log,omitempty"`
}

// Attempt is one HTTP try of a delivery.
type Attempt struct {
	ID           string `json:"id"`
	DeliveryID   string `json:"delivery_id"`
	Number       int    `json:"number"`
	StatusCode   int    `json:"status_code,omitempty"`
	LatencyMS    int64  `json:"latency_ms"`
	Error        string `json:"error,omitempty"`
	ResponseBody string `json:"response_body,omitempty"`
	// ResponseHeaders is a subset of the response headers that helps
	// debugging (Content-Type, Retry-After, request ids…); never cookies.
	ResponseHeaders map[string]string `json:"response_headers,omitempty"`
	CreatedAt       time.Time         `json:"created_at"`
}

// API key roles. Admin may do everything in its program; ops reads
// everything and retries, replays and re-enables, but changes no
// configuration and sees no secrets; viewer only reads; partner sees only
// its partner's clicks, conversions, commissions and endpoints.
const (
	RoleAdmin   = "admin"
	RoleOps     = "ops"
	RoleViewer  = "viewer"
	RolePartner = "partner"
)

// Roles lists the API key roles.
var Roles = []string{RoleAdmin, RoleOps, RoleViewer, RolePartner}

// APIKey authenticates API calls. Only a SHA-256 hash of the key is stored.
type APIKey struct {
	ID        string `json:"id"`
	ProgramID string `json:"program_id"`
	Name      string `json:"name"`
	Role      string `json:"role"`
	// PartnerID is the partner a partner-role key speaks for.
	PartnerID string     `json:"partner_id,omitempty"`
	Hash      string     `json:"-"`
	Prefix    string     `json:"prefix"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// IdempotentResponse is the stored answer to a POST sent with an
// Idempotency-Key. Status 0 means the first request is still running.
type IdempotentResponse struct {
	ProgramID   string
	Key         string
	Fingerprint string
	Status      int
	ContentType string
	Body        []byte
	CreatedAt   time.Time
}

// AuditEntry records one change made through the API.
type AuditEntry struct {
	ID         string          `json:"id"`
	ProgramID  string          `json:"program_id"`
	KeyID      string          `json:"key_id"`
	Action     string          `json:"action"`
	Resource   string          `json:"resource"`
	ResourceID string          `json:"resource_id"`
	Before     json.RawMessage `json:"before,omitempty"`
	After      json.RawMessage `json:"after,omitempty"`
	CreatedAt  time.Time       `json:"created_at"`
}
