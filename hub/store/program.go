package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// GetProgram returns a program.
func (db *DB) GetProgram(ctx context.Context, id string) (*hub.Program, error) {
	return db.c.getProgram(ctx, id)
}

func (c *conn) getProgram(ctx context.Context, id string) (*hub.Program, error) {
	var p hub.Program
	err := c.get(ctx, `SELECT id, name, default_commission_bps, hold_days, created_at, updated_at, settings
		FROM programs WHERE id = ?`, []any{id},
		&p.ID, &p.Name, &p.DefaultCommissionBPS, &p.HoldDays, timeCol{&p.CreatedAt}, timeCol{&p.UpdatedAt},
		jsonCol{&p.ProgramSettings})
	if err != nil {
		return nil, fmt.Errorf("getting program %s: %w", id, notFound(err))
	}
	return &p, nil
}

// UpdateProgram saves p's name, default commission rate, hold days and
// settings, and sets p.UpdatedAt.
func (db *DB) UpdateProgram(ctx context.Context, p *hub.Program) error {
	now := db.c.nowUTC()
	settings, err := jsonText(p.ProgramSettings)
	if err != nil {
		return fmt.Errorf("updating program %s: %w", p.ID, err)
	}
	n, err := db.c.execN(ctx, `UPDATE programs SET name = ?, default_commission_bps = ?, hold_days = ?, updated_at = ?,
		settings = ? WHERE id = ?`, p.Name, p.DefaultCommissionBPS, p.HoldDays, db.c.ts(now), settings, p.ID)
	if err != nil {
		return fmt.Errorf("updating program %s: %w", p.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("updating program %s: %w", p.ID, hub.ErrNotFound)
	}
	p.UpdatedAt = now
	return nil
}

// CreateAPIKey stores k, filling ID, ProgramID (the default program) and
// CreatedAt when empty.
func (db *DB) CreateAPIKey(ctx context.Context, k *hub.APIKey) error {
	if k.ID == "" {
		k.ID = hub.NewID("key")
	}
	k.ProgramID = defaultProgram(k.ProgramID)
	if k.CreatedAt.IsZero() {
		k.CreatedAt = db.c.nowUTC()
	}
	k.CreatedAt = normTime(k.CreatedAt)
	_, err := db.c.exec(ctx, `INSERT INTO api_keys (id, program_id, name, role, hash, prefix, created_at, partner_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.ProgramID, k.Name, k.Role, k.Hash, k.Prefix, db.c.ts(k.CreatedAt), k.PartnerID)
	if err != nil {
		return fmt.Errorf("creating API key %s: %w", k.ID, err)
	}
	return nil
}

const apiKeyCols = `id, program_id, name, role, hash, prefix, created_at, partner_id, revoked_at`

func scanAPIKey(r scanner) (*hub.APIKey, error) {
	var k hub.APIKey
	err := r.Scan(&k.ID, &k.ProgramID, &k.Name, &k.Role, &k.Hash, &k.Prefix, timeCol{&k.CreatedAt},
		&k.PartnerID, nullTimeCol{&k.RevokedAt})
	return &k, err
}

// FindAPIKey finds a key, revoked or not, by the hex SHA-256 of the
// presented secret.
func (db *DB) FindAPIKey(ctx context.Context, hash string) (*hub.APIKey, error) {
	k, err := scanOne(ctx, db.c, `SELECT `+apiKeyCols+` FROM api_keys WHERE hash = ?`, []any{hash}, scanAPIKey)
	if err != nil {
		// The hash is a credential: it stays out of the message.
		return nil, fmt.Errorf("finding API key: %w", err)
	}
	return k, nil
}

// GetAPIKey returns one of a program's keys.
func (db *DB) GetAPIKey(ctx context.Context, programID, id string) (*hub.APIKey, error) {
	k, err := scanOne(ctx, db.c, `SELECT `+apiKeyCols+` FROM api_keys WHERE program_id = ? AND id = ?`,
		[]any{programID, id}, scanAPIKey)
	if err != nil {
		return nil, fmt.Errorf("getting API key %s: %w", id, err)
	}
	return k, nil
}

// ListAPIKeys lists a program's keys, revoked ones included, newest first.
func (db *DB) ListAPIKeys(ctx context.Context, programID string, p hub.Page) ([]*hub.APIKey, error) {
	var w cond
	w.and("program_id = ?", programID)
	out, err := list(ctx, db.c, `SELECT `+apiKeyCols+` FROM api_keys`+w.page(p, "id"), w.args, scanAPIKey)
	if err != nil {
		return nil, fmt.Errorf("listing API keys: %w", err)
	}
	return out, nil
}

// RevokeAPIKey marks a key revoked at at; revoking twice keeps the first
// time.
func (db *DB) RevokeAPIKey(ctx context.Context, programID, id string, at time.Time) error {
	n, err := db.c.execN(ctx, `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE program_id = ? AND id = ?`,
		db.c.ts(at), programID, id)
	if err != nil {
		return fmt.Errorf("revoking API key %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("revoking API key %s: %w", id, hub.ErrNotFound)
	}
	return nil
}

// CreateProgram stores a new program, filling ID and the times.
func (db *DB) CreateProgram(ctx context.Context, p *hub.Program) error {
	if p.ID == "" {
		p.ID = hub.NewID("prg")
	}
	now := db.c.nowUTC()
	p.CreatedAt, p.UpdatedAt = now, now
	settings, err := jsonText(p.ProgramSettings)
	if err != nil {
		return fmt.Errorf("creating program %s: %w", p.ID, err)
	}
	_, err = db.c.exec(ctx, `INSERT INTO programs (id, name, default_commission_bps, hold_days, created_at, updated_at, settings)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, p.ID, p.Name, p.DefaultCommissionBPS, p.HoldDays, db.c.ts(now), db.c.ts(now), settings)
	if err != nil {
		return fmt.Errorf("creating program %s: %w", p.ID, err)
	}
	return nil
}

// ListPrograms lists every program, newest first.
func (db *DB) ListPrograms(ctx context.Context, p hub.Page) ([]*hub.Program, error) {
	var w cond
	out, err := list(ctx, db.c, `SELECT id, name, default_commission_bps, hold_days, created_at, updated_at, settings
		FROM programs`+w.page(p, "id"), w.args, func(r scanner) (*hub.Program, error) {
		var p hub.Program
		err := r.Scan(&p.ID, &p.Name, &p.DefaultCommissionBPS, &p.HoldDays, timeCol{&p.CreatedAt}, timeCol{&p.UpdatedAt},
			jsonCol{&p.ProgramSettings})
		return &p, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing programs: %w", err)
	}
	return out, nil
}

// BeginIdempotent claims r.Key in r.ProgramID for a request with
// r.Fingerprint. It returns nil when the claim is new (the caller runs the
// request and then calls FinishIdempotent or ReleaseIdempotent), or the
// stored claim: a finished answer to replay, or one with Status 0 that is
// still running. Claims older than ttl are forgotten.
func (db *DB) BeginIdempotent(ctx context.Context, r *hub.IdempotentResponse, ttl time.Duration) (*hub.IdempotentResponse, error) {
	now := db.c.nowUTC()
	r.CreatedAt = now
	for try := 0; try < 2; try++ {
		n, err := db.c.execN(ctx, `INSERT INTO idempotency_keys (program_id, idem_key, fingerprint, status, content_type, body, created_at)
			VALUES (?, ?, ?, 0, '', ?, ?) ON CONFLICT (program_id, idem_key) DO NOTHING`,
			r.ProgramID, r.Key, r.Fingerprint, []byte{}, db.c.ts(now))
		if err != nil {
			return nil, fmt.Errorf("claiming idempotency key: %w", err)
		}
		if n == 1 {
			return nil, nil
		}
		var old hub.IdempotentResponse
		err = db.c.get(ctx, `SELECT program_id, idem_key, fingerprint, status, content_type, body, created_at
			FROM idempotency_keys WHERE program_id = ? AND idem_key = ?`, []any{r.ProgramID, r.Key},
			&old.ProgramID, &old.Key, &old.Fingerprint, &old.Status, &old.ContentType, &old.Body, timeCol{&old.CreatedAt})
		if errors.Is(err, sql.ErrNoRows) {
			continue // released meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("reading idempotency key: %w", err)
		}
		if now.Sub(old.CreatedAt) < ttl {
			return &old, nil
		}
		if _, err := db.c.exec(ctx, `DELETE FROM idempotency_keys WHERE program_id = ? AND idem_key = ? AND created_at = ?`,
			r.ProgramID, r.Key, db.c.ts(old.CreatedAt)); err != nil {
			return nil, fmt.Errorf("expiring idempotency key: %w", err)
		}
	}
	return nil, fmt.Errorf("claiming idempotency key: %w", hub.Errorf(hub.ECONFLICT, "the key is being reused concurrently"))
}

// FinishIdempotent stores the answer of a claimed request.
func (db *DB) FinishIdempotent(ctx context.Context, r *hub.IdempotentResponse) error {
	_, err := db.c.exec(ctx, `UPDATE idempotency_keys SET status = ?, content_type = ?, body = ?
		WHERE program_id = ? AND idem_key = ?`, r.Status, r.ContentType, r.Body, r.ProgramID, r.Key)
	if err != nil {
		return fmt.Errorf("storing idempotent response: %w", err)
	}
	return nil
}

// ReleaseIdempotent forgets a claim, so that the request may be sent again
// (after a server error).
func (db *DB) ReleaseIdempotent(ctx context.Context, programID, key string) error {
	_, err := db.c.exec(ctx, `DELETE FROM idempotency_keys WHERE program_id = ? AND idem_key = ?`, programID, key)
	if err != nil {
		return fmt.Errorf("releasing idempotency key: %w", err)
	}
	return nil
}

// Audit records a change made through the API, filling ID, ProgramID (the
// default program) and CreatedAt when empty.
func (db *DB) Audit(ctx context.Context, a *hub.AuditEntry) error {
	if a.ID == "" {
		a.ID = hub.NewID("aud")
	}
	a.ProgramID = defaultProgram(a.ProgramID)
	if a.CreatedAt.IsZero() {
		a.CreatedAt = db.c.nowUTC()
	}
	a.CreatedAt = normTime(a.CreatedAt)
	_, err := db.c.exec(ctx, `INSERT INTO audit_log
		(id, program_id, key_id, action, resource, resource_id, before, after, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.ID, a.ProgramID, a.KeyID, a.Action, a.Resource, a.ResourceID,
		rawArg(a.Before), rawArg(a.After), db.c.ts(a.CreatedAt))
	if err != nil {
		return fmt.Errorf("recording audit entry %s: %w", a.ID, err)
	}
	return nil
}

// ListAudit lists a program's audit log, newest first.
func (db *DB) ListAudit(ctx context.Context, programID string, p hub.Page) ([]*hub.AuditEntry, error) {
	var w cond
	w.and("program_id = ?", programID)
	q := `SELECT id, program_id, key_id, action, resource, resource_id, before, after, created_at
		FROM audit_log` + w.page(p, "id")
	out, err := list(ctx, db.c, q, w.args, func(s scanner) (*hub.AuditEntry, error) {
		var a hub.AuditEntry
		err := s.Scan(&a.ID, &a.ProgramID, &a.KeyID, &a.Action, &a.Resource, &a.ResourceID,
			rawCol{&a.Before}, rawCol{&a.After}, timeCol{&a.CreatedAt})
		return &a, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing audit log: %w", err)
	}
	return out, nil
}
