package hub

import (
	"context"
	"time"
)

// Click is one visit through a partner's referral link.
type Click struct {
	ID        string `json:"id"`
	ProgramID string `json:"program_id"`
	PartnerID string `json:"partner_id"`
	// VisitorID names the browser (a first-party cookie), so several
	// clicks of one visitor can be found.
	VisitorID   string `json:"visitor_id"`
	LandingURL  string `json:"landing_url,omitempty"`
	Destination string `json:"destination,omitempty"`
	Referrer    string `json:"referrer,omitempty"`
	// IPHash and UAHash are keyed hashes: no address or agent is stored.
	IPHash    string    `json:"ip_hash,omitempty"`
	UAHash    string    `json:"ua_hash,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// ClickStore persists clicks. *store.DB implements it.
type ClickStore interface {
	// InsertClicks stores clicks in one statement (a batch); clicks whose
	// id exists are skipped.
	InsertClicks(ctx context.Context, cs []*Click) error
	// ListClicks lists a program's clicks newest first (Filter.PartnerID,
	// Since and Until apply).
	ListClicks(ctx context.Context, programID string, f Filter, p Page) ([]*Click, error)
}
