package store

import (
	"context"
	"fmt"

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
	_, err := db.c.exec(ctx, `INSERT INTO api_keys (id, program_id, name, role, hash, prefix, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.ProgramID, k.Name, k.Role, k.Hash, k.Prefix, db.c.ts(k.CreatedAt))
	if err != nil {
		return fmt.Errorf("creating API key %s: %w", k.ID, err)
	}
	return nil
}

// FindAPIKey finds a key by the hex SHA-256 of the presented secret.
func (db *DB) FindAPIKey(ctx context.Context, hash string) (*hub.APIKey, error) {
	var k hub.APIKey
	err := db.c.get(ctx, `SELECT id, program_id, name, role, hash, prefix, created_at
		FROM api_keys WHERE hash = ?`, []any{hash},
		&k.ID, &k.ProgramID, &k.Name, &k.Role, &k.Hash, &k.Prefix, timeCol{&k.CreatedAt})
	if err != nil {
		// The hash is a credential: it stays out of the message.
		return nil, fmt.Errorf("finding API key: %w", notFound(err))
	}
	return &k, nil
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
