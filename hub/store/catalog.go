package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// CreateSource stores s with its secrets encrypted, filling ID, ProgramID
// (the default program) and CreatedAt when empty.
func (db *DB) CreateSource(ctx context.Context, s *hub.Source) error {
	if s.ID == "" {
		s.ID = hub.NewID("src")
	}
	s.ProgramID = defaultProgram(s.ProgramID)
	if s.CreatedAt.IsZero() {
		s.CreatedAt = db.c.nowUTC()
	}
	s.CreatedAt = normTime(s.CreatedAt)
	secret, err := db.c.seal(s.Secret)
	if err != nil {
		return fmt.Errorf("creating source %s: %w", s.ID, err)
	}
	prev, err := db.c.seal(s.PreviousSecret)
	if err != nil {
		return fmt.Errorf("creating source %s: %w", s.ID, err)
	}
	opts, err := jsonText(s.Options)
	if err != nil {
		return fmt.Errorf("creating source %s: %w", s.ID, err)
	}
	creds, err := db.c.sealCredentials(s.Credentials)
	if err != nil {
		return fmt.Errorf("creating source %s: %w", s.ID, err)
	}
	_, err = db.c.exec(ctx, `INSERT INTO sources (id, program_id, provider, name, secret, previous_secret, options, created_at,
		credentials, cursor, health)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.ID, s.ProgramID, s.Provider, s.Name, secret, prev, opts, db.c.ts(s.CreatedAt), creds, s.Cursor, s.Health)
	if err != nil {
		return fmt.Errorf("creating source %s: %w", s.ID, err)
	}
	return nil
}

const sourceCols = `id, program_id, provider, name, secret, previous_secret, options, created_at,
	credentials, cursor, health, last_verified_at, last_failure_at, last_failure`

func (c *conn) scanSource(r scanner) (*hub.Source, error) {
	var s hub.Source
	var secret, prev, creds string
	if err := r.Scan(&s.ID, &s.ProgramID, &s.Provider, &s.Name, &secret, &prev,
		jsonCol{&s.Options}, timeCol{&s.CreatedAt}, &creds, &s.Cursor, &s.Health,
		nullTimeCol{&s.LastVerifiedAt}, nullTimeCol{&s.LastFailureAt}, &s.LastFailure); err != nil {
		return nil, err
	}
	var err error
	if s.Credentials, err = c.openCredentials(creds); err != nil {
		return nil, err
	}
	if s.Secret, err = c.open(secret); err != nil {
		return nil, err
	}
	if s.PreviousSecret, err = c.open(prev); err != nil {
		return nil, err
	}
	return &s, nil
}

// GetSource returns a source with its secrets in clear.
func (db *DB) GetSource(ctx context.Context, id string) (*hub.Source, error) {
	return db.c.getSource(ctx, id)
}

func (c *conn) getSource(ctx context.Context, id string) (*hub.Source, error) {
	s, err := scanOne(ctx, c, `SELECT `+sourceCols+` FROM sources WHERE id = ?`, []any{id}, c.scanSource)
	if err != nil {
		return nil, fmt.Errorf("getting source %s: %w", id, err)
	}
	return s, nil
}

// UpdateSource saves a source's name, secrets, options and credentials.
func (db *DB) UpdateSource(ctx context.Context, s *hub.Source) error {
	secret, err := db.c.seal(s.Secret)
	if err != nil {
		return fmt.Errorf("updating source %s: %w", s.ID, err)
	}
	prev, err := db.c.seal(s.PreviousSecret)
	if err != nil {
		return fmt.Errorf("updating source %s: %w", s.ID, err)
	}
	opts, err := jsonText(s.Options)
	if err != nil {
		return fmt.Errorf("updating source %s: %w", s.ID, err)
	}
	creds, err := db.c.sealCredentials(s.Credentials)
	if err != nil {
		return fmt.Errorf("updating source %s: %w", s.ID, err)
	}
	n, err := db.c.execN(ctx, `UPDATE sources SET name = ?, secret = ?, previous_secret = ?, options = ?, credentials = ?
		WHERE id = ?`, s.Name, secret, prev, opts, creds, s.ID)
	if err != nil {
		return fmt.Errorf("updating source %s: %w", s.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("updating source %s: %w", s.ID, hub.ErrNotFound)
	}
	return nil
}

// NoteSourceVerified records that a webhook of the source verified at at.
// Only a later time is written, so concurrent requests never move it back.
func (db *DB) NoteSourceVerified(ctx context.Context, id string, at time.Time) error {
	_, err := db.c.exec(ctx, `UPDATE sources SET last_verified_at = ?
		WHERE id = ? AND (last_verified_at IS NULL OR last_verified_at < ?)`, db.c.ts(at), id, db.c.ts(at))
	if err != nil {
		return fmt.Errorf("noting source %s verified: %w", id, err)
	}
	return nil
}

// NoteSourceFailure records why a webhook of the source was refused at at.
func (db *DB) NoteSourceFailure(ctx context.Context, id, reason string, at time.Time) error {
	_, err := db.c.exec(ctx, `UPDATE sources SET last_failure_at = ?, last_failure = ?
		WHERE id = ? AND (last_failure_at IS NULL OR last_failure_at < ?)`, db.c.ts(at), reason, id, db.c.ts(at))
	if err != nil {
		return fmt.Errorf("noting source %s failure: %w", id, err)
	}
	return nil
}

// ListSources lists a program's sources, newest first.
func (db *DB) ListSources(ctx context.Context, programID string, p hub.Page) ([]*hub.Source, error) {
	var w cond
	w.and("program_id = ?", programID)
	out, err := list(ctx, db.c, `SELECT `+sourceCols+` FROM sources`+w.page(p, "id"), w.args, db.c.scanSource)
	if err != nil {
		return nil, fmt.Errorf("listing sources: %w", err)
	}
	return out, nil
}

// CreatePartner stores p, filling ID, ProgramID (the default program) and
// CreatedAt when empty. A code already used in the program, in any case,
// fails with ECONFLICT.
func (db *DB) CreatePartner(ctx context.Context, p *hub.Partner) error {
	if p.ID == "" {
		p.ID = hub.NewID("ptn")
	}
	p.ProgramID = defaultProgram(p.ProgramID)
	if p.CreatedAt.IsZero() {
		p.CreatedAt = db.c.nowUTC()
	}
	p.CreatedAt = normTime(p.CreatedAt)
	tags, err := jsonText(tagsOf(p.Tags))
	if err != nil {
		return fmt.Errorf("creating partner %s: %w", p.ID, err)
	}
	_, err = db.c.exec(ctx, `INSERT INTO partners (id, program_id, name, email, code, created_at, tags)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.ProgramID, p.Name, p.Email, p.Code, db.c.ts(p.CreatedAt), tags)
	if isConflict(err) {
		err = fmt.Errorf("%w: %w", hub.Errorf(hub.ECONFLICT, "partner code %q is already in use", p.Code), err)
	}
	if err != nil {
		return fmt.Errorf("creating partner %s: %w", p.ID, err)
	}
	return nil
}

const partnerCols = `id, program_id, name, email, code, created_at, tags`

func scanPartner(r scanner) (*hub.Partner, error) {
	var p hub.Partner
	err := r.Scan(&p.ID, &p.ProgramID, &p.Name, &p.Email, &p.Code, timeCol{&p.CreatedAt}, jsonCol{&p.Tags})
	if len(p.Tags) == 0 {
		p.Tags = nil
	}
	return &p, err
}

func tagsOf(t []string) []string {
	if t == nil {
		return []string{}
	}
	return t
}

// UpdatePartner saves a partner's name, email and tags.
func (db *DB) UpdatePartner(ctx context.Context, p *hub.Partner) error {
	tags, err := jsonText(tagsOf(p.Tags))
	if err != nil {
		return fmt.Errorf("updating partner %s: %w", p.ID, err)
	}
	n, err := db.c.execN(ctx, `UPDATE partners SET name = ?, email = ?, tags = ? WHERE program_id = ? AND id = ?`,
		p.Name, p.Email, tags, p.ProgramID, p.ID)
	if err != nil {
		return fmt.Errorf("updating partner %s: %w", p.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("updating partner %s: %w", p.ID, hub.ErrNotFound)
	}
	return nil
}

// GetPartner returns a partner inside the transaction (a copy: a partner
// is read once per transaction).
func (tx *Tx) GetPartner(ctx context.Context, programID, id string) (*hub.Partner, error) {
	p, err := fromGen(ctx, tx, func(g *configGen) map[string]*hub.Partner { return g.partners }, programID+"|"+id,
		func() (*hub.Partner, error) {
			p, err := scanOne(ctx, tx.c, `SELECT `+partnerCols+` FROM partners WHERE program_id = ? AND id = ?`,
				[]any{programID, id}, scanPartner)
			if err != nil {
				return nil, fmt.Errorf("getting partner %s: %w", id, err)
			}
			return p, nil
		})
	if err != nil {
		return nil, err
	}
	cp := *p
	return &cp, nil
}

// GetPartner returns a partner of the program.
func (db *DB) GetPartner(ctx context.Context, programID, id string) (*hub.Partner, error) {
	p, err := scanOne(ctx, db.c, `SELECT `+partnerCols+` FROM partners WHERE program_id = ? AND id = ?`,
		[]any{programID, id}, scanPartner)
	if err != nil {
		return nil, fmt.Errorf("getting partner %s: %w", id, err)
	}
	return p, nil
}

// ListPartners lists a program's partners, newest first.
func (db *DB) ListPartners(ctx context.Context, programID string, p hub.Page) ([]*hub.Partner, error) {
	var w cond
	w.and("program_id = ?", programID)
	out, err := list(ctx, db.c, `SELECT `+partnerCols+` FROM partners`+w.page(p, "id"), w.args, scanPartner)
	if err != nil {
		return nil, fmt.Errorf("listing partners: %w", err)
	}
	return out, nil
}

// FindPartnerByCode matches codes case-insensitively. A code is looked up
// once per transaction, its absence too: a partner created while a batch
// is applied counts from the next transaction on. Found partners are kept
// in the transaction's generation (shared in processing), absent codes
// only in the transaction: they come from webhooks, without bound.
func (tx *Tx) FindPartnerByCode(ctx context.Context, programID, code string) (*hub.Partner, error) {
	ck := programID + "|" + code
	p, ok := tx.byCode[ck]
	if !ok {
		g, err := tx.configGen(ctx)
		if err != nil {
			return nil, err
		}
		gk := programID + "|" + strings.ToLower(code) // codes are ASCII
		if p, ok = cached(g, g.byCode, gk); !ok {
			p, err = scanOne(ctx, tx.c, `SELECT `+partnerCols+` FROM partners
				WHERE program_id = ? AND lower(code) = lower(?)`, []any{programID, code}, scanPartner)
			switch {
			case err == nil:
				keep(g, g.byCode, gk, p)
				keep(g, g.partners, p.ProgramID+"|"+p.ID, p)
			case !errors.Is(err, hub.ErrNotFound):
				return nil, fmt.Errorf("finding partner by code %q: %w", code, err)
			}
		}
		if tx.byCode == nil {
			tx.byCode = map[string]*hub.Partner{}
		}
		tx.byCode[ck] = p
	}
	if p == nil {
		return nil, fmt.Errorf("finding partner by code %q: %w", code, hub.ErrNotFound)
	}
	cp := *p
	return &cp, nil
}

// CreateEndpoint stores e with its secret encrypted, filling ID,
// ProgramID (the default program) and CreatedAt when empty.
func (db *DB) CreateEndpoint(ctx context.Context, e *hub.Endpoint) error {
	if e.ID == "" {
		e.ID = hub.NewID("ep")
	}
	e.ProgramID = defaultProgram(e.ProgramID)
	if e.CreatedAt.IsZero() {
		e.CreatedAt = db.c.nowUTC()
	}
	e.CreatedAt = normTime(e.CreatedAt)
	secret, err := db.c.seal(e.Secret)
	if err != nil {
		return fmt.Errorf("creating endpoint %s: %w", e.ID, err)
	}
	types, err := jsonText(e.EventTypes)
	if err != nil {
		return fmt.Errorf("creating endpoint %s: %w", e.ID, err)
	}
	prev, err := db.c.seal(e.PreviousSecret)
	if err != nil {
		return fmt.Errorf("creating endpoint %s: %w", e.ID, err)
	}
	settings, err := jsonText(e.EndpointSettings)
	if err != nil {
		return fmt.Errorf("creating endpoint %s: %w", e.ID, err)
	}
	_, err = db.c.exec(ctx, `INSERT INTO endpoints
		(id, program_id, url, description, event_types, partner_id, secret, enabled, created_at,
		 settings, previous_secret, previous_secret_until, disabled_reason, failing_since)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.ID, e.ProgramID, e.URL, e.Description, types, nullStr(e.PartnerID), secret, e.Enabled, db.c.ts(e.CreatedAt),
		settings, prev, db.c.nullTS(e.PreviousSecretUntil), e.DisabledReason, db.c.nullTS(e.FailingSince))
	if err != nil {
		return fmt.Errorf("creating endpoint %s: %w", e.ID, err)
	}
	return nil
}

// UpdateEndpoint saves every mutable field of e: URL, description, event
// types, partner scope, secrets, settings, enabled state, disabled reason
// and failing-since time.
func (db *DB) UpdateEndpoint(ctx context.Context, e *hub.Endpoint) error {
	secret, err := db.c.seal(e.Secret)
	if err != nil {
		return fmt.Errorf("updating endpoint %s: %w", e.ID, err)
	}
	prev, err := db.c.seal(e.PreviousSecret)
	if err != nil {
		return fmt.Errorf("updating endpoint %s: %w", e.ID, err)
	}
	types, err := jsonText(e.EventTypes)
	if err != nil {
		return fmt.Errorf("updating endpoint %s: %w", e.ID, err)
	}
	settings, err := jsonText(e.EndpointSettings)
	if err != nil {
		return fmt.Errorf("updating endpoint %s: %w", e.ID, err)
	}
	n, err := db.c.execN(ctx, `UPDATE endpoints SET url = ?, description = ?, event_types = ?, partner_id = ?,
		secret = ?, enabled = ?, settings = ?, previous_secret = ?, previous_secret_until = ?, disabled_reason = ?,
		failing_since = ? WHERE program_id = ? AND id = ?`,
		e.URL, e.Description, types, nullStr(e.PartnerID), secret, e.Enabled, settings, prev,
		db.c.nullTS(e.PreviousSecretUntil), e.DisabledReason, db.c.nullTS(e.FailingSince), e.ProgramID, e.ID)
	if err != nil {
		return fmt.Errorf("updating endpoint %s: %w", e.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("updating endpoint %s: %w", e.ID, hub.ErrNotFound)
	}
	return nil
}

const endpointCols = `id, program_id, url, description, event_types, partner_id, secret, enabled, created_at,
	settings, previous_secret, previous_secret_until, disabled_reason, failing_since`

func (c *conn) scanEndpoint(r scanner) (*hub.Endpoint, error) {
	var e hub.Endpoint
	var secret, prev string
	if err := r.Scan(&e.ID, &e.ProgramID, &e.URL, &e.Description, jsonCol{&e.EventTypes},
		strCol{&e.PartnerID}, &secret, &e.Enabled, timeCol{&e.CreatedAt},
		jsonCol{&e.EndpointSettings}, &prev, nullTimeCol{&e.PreviousSecretUntil}, &e.DisabledReason,
		nullTimeCol{&e.FailingSince}); err != nil {
		return nil, err
	}
	var err error
	if e.Secret, err = c.open(secret); err != nil {
		return nil, err
	}
	if e.PreviousSecret, err = c.open(prev); err != nil {
		return nil, err
	}
	return &e, nil
}

// GetEndpoint returns an endpoint of the program with its secret in clear.
func (db *DB) GetEndpoint(ctx context.Context, programID, id string) (*hub.Endpoint, error) {
	e, err := scanOne(ctx, db.c, `SELECT `+endpointCols+` FROM endpoints WHERE program_id = ? AND id = ?`,
		[]any{programID, id}, db.c.scanEndpoint)
	if err != nil {
		return nil, fmt.Errorf("getting endpoint %s: %w", id, err)
	}
	return e, nil
}

// ListEndpoints lists a program's endpoints, newest first, with their
// secrets in clear.
func (db *DB) ListEndpoints(ctx context.Context, programID string, p hub.Page) ([]*hub.Endpoint, error) {
	var w cond
	w.and("program_id = ?", programID)
	out, err := list(ctx, db.c, `SELECT `+endpointCols+` FROM endpoints`+w.page(p, "id"), w.args, db.c.scanEndpoint)
	if err != nil {
		return nil, fmt.Errorf("listing endpoints: %w", err)
	}
	return out, nil
}

// sealCredentials encrypts a credentials map as one sealed JSON value.
func (c *conn) sealCredentials(m map[string]string) (string, error) {
	if len(m) == 0 {
		return "", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	return c.seal(string(b))
}

func (c *conn) openCredentials(sealed string) (map[string]string, error) {
	if sealed == "" {
		return nil, nil
	}
	plain, err := c.open(sealed)
	if err != nil {
		return nil, err
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(plain), &m); err != nil {
		return nil, fmt.Errorf("reading source credentials: %w", err)
	}
	return m, nil
}

// ReconcilableSources lists every program's sources that hold REST
// credentials, oldest first.
func (db *DB) ReconcilableSources(ctx context.Context) ([]*hub.Source, error) {
	out, err := list(ctx, db.c, `SELECT `+sourceCols+` FROM sources WHERE credentials <> '' ORDER BY id`, nil, db.c.scanSource)
	if err != nil {
		return nil, fmt.Errorf("listing reconcilable sources: %w", err)
	}
	return out, nil
}

// SetSourceState saves a source's reconciliation cursor and health.
func (db *DB) SetSourceState(ctx context.Context, id, cursor, health string) error {
	n, err := db.c.execN(ctx, `UPDATE sources SET cursor = ?, health = ? WHERE id = ?`, cursor, health, id)
	if err != nil {
		return fmt.Errorf("saving source %s state: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("saving source %s state: %w", id, hub.ErrNotFound)
	}
	return nil
}
