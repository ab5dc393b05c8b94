package store

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// Times are stored as TIMESTAMPTZ on PostgreSQL and as INTEGER unix
// microseconds (UTC) on SQLite. Both keep microseconds, so the store
// truncates every time it writes to whole microseconds and returns UTC.

// normTime returns t in UTC truncated to the microsecond, as stored.
func normTime(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}

// nowUTC returns the current time as stored.
func (c *conn) nowUTC() time.Time { return normTime(c.now()) }

// ts converts t to the dialect's column value.
func (c *conn) ts(t time.Time) any {
	t = normTime(t)
	if c.pg {
		return t
	}
	return t.UnixMicro()
}

// nullTS converts t to a column value, NULL for nil.
func (c *conn) nullTS(t *time.Time) any {
	if t == nil {
		return nil
	}
	return c.ts(*t)
}

// normTimePtr returns a normalized copy of *t, or nil.
func normTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	n := normTime(*t)
	return &n
}

// timeCol scans a time column of either dialect into *t (zero for NULL).
type timeCol struct{ t *time.Time }

func (s timeCol) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*s.t = time.Time{}
	case int64:
		*s.t = time.UnixMicro(v).UTC()
	case time.Time:
		*s.t = v.UTC()
	default:
		return fmt.Errorf("scanning time: unsupported type %T", src)
	}
	return nil
}

// nullTimeCol scans a nullable time column into **t.
type nullTimeCol struct{ t **time.Time }

func (s nullTimeCol) Scan(src any) error {
	if src == nil {
		*s.t = nil
		return nil
	}
	var t time.Time
	if err := (timeCol{&t}).Scan(src); err != nil {
		return err
	}
	*s.t = &t
	return nil
}

// nullStr maps "" to NULL, for optional references.
func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// strCol scans a nullable text column into *s ("" for NULL).
type strCol struct{ s *string }

func (c strCol) Scan(src any) error {
	var ns sql.NullString
	if err := ns.Scan(src); err != nil {
		return err
	}
	*c.s = ns.String
	return nil
}

// jsonText encodes v for a JSON TEXT column. nil maps and slices encode
// as null and decode back to nil, so values round-trip exactly.
func jsonText(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encoding JSON column: %w", err)
	}
	return string(b), nil
}

// jsonCol scans a JSON TEXT column into v.
type jsonCol struct{ v any }

func (c jsonCol) Scan(src any) error {
	var b []byte
	switch s := src.(type) {
	case nil:
		return nil
	case string:
		b = []byte(s)
	case []byte:
		b = s
	default:
		return fmt.Errorf("scanning JSON column: unsupported type %T", src)
	}
	if len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, c.v); err != nil {
		return fmt.Errorf("decoding JSON column: %w", err)
	}
	return nil
}

// rawCol scans a nullable JSON TEXT column into a json.RawMessage, nil for
// NULL.
type rawCol struct{ m *json.RawMessage }

func (c rawCol) Scan(src any) error {
	switch s := src.(type) {
	case nil:
		*c.m = nil
	case string:
		*c.m = json.RawMessage(s)
	case []byte:
		*c.m = append(json.RawMessage(nil), s...)
	default:
		return fmt.Errorf("scanning JSON column: unsupported type %T", src)
	}
	return nil
}

// rawArg maps an empty json.RawMessage to NULL.
func rawArg(m json.RawMessage) any {
	if len(m) == 0 {
		return nil
	}
	return string(m)
}

// seal encrypts a secret for storage.
func (c *conn) seal(plain string) (string, error) {
	s, err := c.cipher.Seal(plain)
	if err != nil {
		return "", fmt.Errorf("sealing secret: %w", err)
	}
	return s, nil
}

// open decrypts a stored secret.
func (c *conn) open(sealed string) (string, error) {
	s, err := c.cipher.Open(sealed)
	if err != nil {
		return "", fmt.Errorf("opening secret: %w", err)
	}
	return s, nil
}

// cond collects the WHERE conditions of a list query and their args.
type cond struct {
	terms []string
	args  []any
}

func (w *cond) and(term string, args ...any) {
	w.terms = append(w.terms, term)
	w.args = append(w.args, args...)
}

// filter applies the Filter fields a list supports: status (when
// statusCol is set), partner (when partnerTerm, a condition with one ?,
// is set) and since (inclusive) / until (exclusive) on timeCol.
func (w *cond) filter(c *conn, f hub.Filter, statusCol, partnerTerm, timeCol string) {
	if f.Status != "" && statusCol != "" {
		w.and(statusCol+" = ?", f.Status)
	}
	if f.PartnerID != "" && partnerTerm != "" {
		w.and(partnerTerm, f.PartnerID)
	}
	if !f.Since.IsZero() && timeCol != "" {
		w.and(timeCol+" >= ?", c.ts(f.Since))
	}
	if !f.Until.IsZero() && timeCol != "" {
		w.and(timeCol+" < ?", c.ts(f.Until))
	}
}

// page returns the WHERE, ORDER BY and LIMIT clauses for one page, newest
// first by idCol, after the cursor. Limit 0 means 50; it is capped at 200.
func (w *cond) page(p hub.Page, idCol string) string {
	limit := p.Limit
	switch {
	case limit <= 0:
		limit = 50
	case limit > 200:
		limit = 200
	}
	if p.Cursor != "" {
		w.and(idCol+" < ?", p.Cursor)
	}
	return w.where() + fmt.Sprintf(" ORDER BY %s DESC LIMIT %d", idCol, limit)
}

func (w *cond) where() string {
	if len(w.terms) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.terms, " AND ")
}

// defaultProgram returns id, or hub.DefaultProgramID when it is empty.
func defaultProgram(id string) string {
	if id == "" {
		return hub.DefaultProgramID
	}
	return id
}

// dueLimit bounds the sweeper's queries.
func dueLimit(n int) int {
	if n <= 0 {
		return 100
	}
	if n > 1000 {
		return 1000
	}
	return n
}
