package ui

import (
	"encoding/json"
	"time"
)

// The API's documents, with the fields the pages show (see
// hub/openapi/openapi.json).

type source struct {
	ID             string     `json:"id"`
	Provider       string     `json:"provider"`
	Name           string     `json:"name"`
	Health         string     `json:"health"`
	LastVerifiedAt *time.Time `json:"last_verified_at"`
	LastFailureAt  *time.Time `json:"last_failure_at"`
	LastFailure    string     `json:"last_failure"`
	WebhookURL     string     `json:"webhook_url"`
	Setup          []string   `json:"setup"`
	CreatedAt      time.Time  `json:"created_at"`
}

type triggerResult struct {
	Event          string `json:"event"`
	EventID        string `json:"event_id"`
	InboundStatus  int    `json:"inbound_status"`
	InboundEventID string `json:"inbound_event_id"`
	Duplicate      bool   `json:"duplicate"`
	InboundError   string `json:"inbound_error"`
}

type inboundEvent struct {
	ID           string     `json:"id"`
	SourceID     string     `json:"source_id"`
	Provider     string     `json:"provider"`
	EventType    string     `json:"event_type"`
	Status       string     `json:"status"`
	Reason       string     `json:"reason"`
	Attempts     int        `json:"attempts"`
	LastError    string     `json:"last_error"`
	ReceivedAt   time.Time  `json:"received_at"`
	ProcessedAt  *time.Time `json:"processed_at"`
	BodyPurgedAt *time.Time `json:"body_purged_at"`
	Results      struct {
		ConversionIDs []string `json:"conversion_ids"`
		RefundIDs     []string `json:"refund_ids"`
	} `json:"results"`
	Body         string `json:"body"`
	BodyEncoding string `json:"body_encoding"`
}

type attempt struct {
	Number       int       `json:"number"`
	StatusCode   int       `json:"status_code"`
	LatencyMS    int64     `json:"latency_ms"`
	Error        string    `json:"error"`
	ResponseBody string    `json:"response_body"`
	CreatedAt    time.Time `json:"created_at"`
}

type delivery struct {
	ID            string     `json:"id"`
	EventID       string     `json:"event_id"`
	EndpointID    string     `json:"endpoint_id"`
	EventType     string     `json:"event_type"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	LastError     string     `json:"last_error"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	AttemptLog    []attempt  `json:"attempts_log"`
}

type endpoint struct {
	ID             string     `json:"id"`
	URL            string     `json:"url"`
	Description    string     `json:"description"`
	EventTypes     []string   `json:"event_types"`
	PartnerID      string     `json:"partner_id"`
	Enabled        bool       `json:"enabled"`
	DisabledReason string     `json:"disabled_reason"`
	FailingSince   *time.Time `json:"failing_since"`
	CreatedAt      time.Time  `json:"created_at"`
	Secret         string     `json:"secret"`
	// Breaker is the circuit breaker's state in the serving process:
	// closed, half_open or open.
	Breaker string `json:"breaker"`
}

type partner struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Email     string    `json:"email"`
	Code      string    `json:"code"`
	Tags      []string  `json:"tags"`
	CreatedAt time.Time `json:"created_at"`
}

type promoCode struct {
	ID        string `json:"id"`
	PartnerID string `json:"partner_id"`
	Code      string `json:"code"`
}

type conversion struct {
	ID                string    `json:"id"`
	SourceID          string    `json:"source_id"`
	Provider          string    `json:"provider"`
	Kind              string    `json:"kind"`
	Livemode          bool      `json:"livemode"`
	BaseMinor         int64     `json:"base_minor"`
	GrossMinor        int64     `json:"gross_minor"`
	TaxMinor          int64     `json:"tax_minor"`
	Currency          string    `json:"currency"`
	PartnerID         string    `json:"partner_id"`
	AttributionReason string    `json:"attribution_reason"`
	RefundedMinor     int64     `json:"refunded_minor"`
	OccurredAt        time.Time `json:"occurred_at"`
	Hints             struct {
		ClickID     string   `json:"click_id"`
		PartnerCode string   `json:"partner_code"`
		PromoCodes  []string `json:"promo_codes"`
	} `json:"hints"`
}

type commissionEntry struct {
	ID          string    `json:"id"`
	Type        string    `json:"type"`
	AmountMinor int64     `json:"amount_minor"`
	Currency    string    `json:"currency"`
	CreatedAt   time.Time `json:"created_at"`
}

type commission struct {
	ID           string `json:"id"`
	ConversionID string `json:"conversion_id"`
	PartnerID    string `json:"partner_id"`
	Status       string `json:"status"`
	RateBPS      int64  `json:"rate_bps"`
	Currency     string `json:"currency"`
	Test         bool   `json:"test"`
	NetMinor     int64  `json:"net_minor"`
	Terms        struct {
		Explanation string `json:"explanation"`
	} `json:"terms"`
	Entries []commissionEntry `json:"entries"`
}

type rule struct {
	ID              string          `json:"id"`
	Name            string          `json:"name"`
	BPS             int64           `json:"bps"`
	FlatMinor       json.RawMessage `json:"flat_minor"`
	PartnerID       string          `json:"partner_id"`
	PartnerTag      string          `json:"partner_tag"`
	ProductID       string          `json:"product_id"`
	PriceID         string          `json:"price_id"`
	Kind            string          `json:"kind"`
	RecurringMonths int             `json:"recurring_months"`
}

type payout struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Totals []struct {
		Currency    string `json:"currency"`
		AmountMinor int64  `json:"amount_minor"`
		Lines       int    `json:"lines"`
	} `json:"totals"`
	Lines []struct {
		PartnerID       string `json:"partner_id"`
		PartnerName     string `json:"partner_name"`
		Currency        string `json:"currency"`
		AmountMinor     int64  `json:"amount_minor"`
		EntryCount      int    `json:"entry_count"`
		CommissionCount int    `json:"commission_count"`
	} `json:"lines"`
	CreatedAt   time.Time  `json:"created_at"`
	ConfirmedAt *time.Time `json:"confirmed_at"`
}

type reportCurrency struct {
	Currency      string `json:"currency"`
	Conversions   int64  `json:"conversions"`
	RevenueMinor  int64  `json:"revenue_minor"`
	RefundedMinor int64  `json:"refunded_minor"`
	Commissions   struct {
		PendingMinor  int64 `json:"pending_minor"`
		HeldMinor     int64 `json:"held_minor"`
		ApprovedMinor int64 `json:"approved_minor"`
		PaidMinor     int64 `json:"paid_minor"`
		NetMinor      int64 `json:"net_minor"`
	} `json:"commissions"`
}

type reportRow struct {
	PartnerID   string           `json:"partner_id"`
	PartnerName string           `json:"partner_name"`
	PartnerCode string           `json:"partner_code"`
	Clicks      int64            `json:"clicks"`
	Currencies  []reportCurrency `json:"currencies"`
}

type report struct {
	Since *time.Time  `json:"since"`
	Until *time.Time  `json:"until"`
	Data  []reportRow `json:"data"`
}
