package store

import (
	"context"
	"fmt"

	"github.com/partnerhub/partnerhub/hub"
)

// FindPartnerByCode finds a partner by code, case-insensitively, outside a
// transaction (referral links). With programID "" it searches every
// program: a partner of the default program wins, then the oldest one.
func (db *DB) FindPartnerByCode(ctx context.Context, programID, code string) (*hub.Partner, error) {
	q := `SELECT ` + partnerCols + ` FROM partners WHERE program_id = ? AND lower(code) = lower(?)`
	args := []any{programID, code}
	if programID == "" {
		q = `SELECT ` + partnerCols + ` FROM partners WHERE lower(code) = lower(?)
			ORDER BY CASE WHEN program_id = ? THEN 0 ELSE 1 END, created_at, id LIMIT 1`
		args = []any{code, hub.DefaultProgramID}
	}
	p, err := scanOne(ctx, db.c, q, args, scanPartner)
	if err != nil {
		return nil, fmt.Errorf("finding partner by code %q: %w", code, err)
	}
	return p, nil
}
