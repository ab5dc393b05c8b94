package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// StatusOf maps an error code to its HTTP status. It is the only place
// that does.
func StatusOf(code string) int {
	switch code {
	case ECONFLICT:
		return http.StatusConflict
	case EINVALID:
		return http.StatusUnprocessableEntity
	case ENOTFOUND:
		return http.StatusNotFound
	case EUNAUTHORIZED:
		return http.StatusUnauthorized
	case EFORBIDDEN:
		return http.StatusForbidden
	case EUNAVAILABLE:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// StatusClientClosedRequest is the status logged for a request whose
// context ended before the answer (nginx's 499): the client went away, or
// the server's read deadline passed. No one reads it.
const StatusClientClosedRequest = 499

// Problem is an RFC 9457 problem details document.
type Problem struct {
	Type   string            `json:"type"`
	Title  string            `json:"title"`
	Status int               `json:"status"`
	Detail string            `json:"detail,omitempty"`
	Errors map[string]string `json:"errors,omitempty"`
}

// WriteProblem answers err as application/problem+json. Internal errors
// are logged and shown without detail.
func WriteProblem(c echo.Context, err error) error {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		msg, _ := he.Message.(string)
		if msg == http.StatusText(he.Code) {
			msg = ""
		}
		return writeProblem(c, Problem{Type: "about:blank", Title: http.StatusText(he.Code), Status: he.Code, Detail: msg})
	}
	if errors.Is(err, context.Canceled) && c.Request().Context().Err() != nil {
		// The request's context ended before the answer: the client hung
		// up, or the server's read deadline passed while the request
		// waited. No one reads the answer; a warning, not an error, says
		// what was abandoned and after how long.
		slog.WarnContext(c.Request().Context(), "request canceled before its answer", "method", c.Request().Method, "path", c.Path(), "error", err)
		return writeProblem(c, Problem{Type: "about:blank", Title: "Client Closed Request", Status: StatusClientClosedRequest})
	}
	code := ErrorCode(err)
	st := StatusOf(code)
	p := Problem{Type: "about:blank", Title: http.StatusText(st), Status: st}
	var e *Error
	if code == EINTERNAL || !errors.As(err, &e) {
		slog.ErrorContext(c.Request().Context(), "request failed", "method", c.Request().Method, "path", c.Path(), "error", err)
	} else {
		p.Detail = e.Message
		p.Errors = e.Fields
	}
	if st == http.StatusServiceUnavailable {
		c.Response().Header().Set("Retry-After", "5")
	}
	return writeProblem(c, p)
}

func writeProblem(c echo.Context, p Problem) error {
	if c.Response().Committed {
		return nil
	}
	c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
	c.Response().WriteHeader(p.Status)
	return echo.New().JSONSerializer.Serialize(c, p, "")
}

// ErrorHandler is the echo error handler: every error becomes problem+json.
func ErrorHandler(err error, c echo.Context) {
	_ = WriteProblem(c, err)
}

// List is the envelope of every list response.
type List[T any] struct {
	Data       []T    `json:"data"`
	NextCursor string `json:"next_cursor"`
}

// NewList builds a list response; idOf gives an item's id for the cursor.
// The cursor is set when the page is full.
func NewList[T any](items []T, p Page, idOf func(T) string) List[T] {
	l := List[T]{Data: items}
	if l.Data == nil {
		l.Data = []T{}
	}
	if len(items) > 0 && len(items) >= p.Limit {
		l.NextCursor = idOf(items[len(items)-1])
	}
	return l
}

// cursorRE matches the ids list cursors are: a prefix, "_" and a ULID (or
// a fixed name such as prg_default).
var cursorRE = regexp.MustCompile(`^[a-z]{2,8}_[0-9a-z_]{1,64}$`)

// PageOf reads ?limit= and ?cursor=.
func PageOf(c echo.Context) (Page, error) {
	p := Page{Cursor: c.QueryParam("cursor"), Limit: 50}
	if p.Cursor != "" && !cursorRE.MatchString(p.Cursor) {
		return p, Invalid(map[string]string{"cursor": "must be the next_cursor of an earlier page"})
	}
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 200 {
			return p, Invalid(map[string]string{"limit": "must be an integer from 1 to 200"})
		}
		p.Limit = n
	}
	return p, nil
}

// FilterOf reads ?status=, ?partner_id=, ?since= and ?until= (RFC 3339).
// A partner-role caller's filter is always its own partner.
func FilterOf(c echo.Context) (Filter, error) {
	f := Filter{Status: c.QueryParam("status"), PartnerID: c.QueryParam("partner_id")}
	if k := Caller(c); k != nil && k.Role == RolePartner {
		f.PartnerID = k.PartnerID
	}
	bad := map[string]string{}
	for name, v := range map[string]string{"status": f.Status, "partner_id": f.PartnerID} {
		if !ValidText(v) {
			bad[name] = "must be UTF-8 text without NUL"
		}
	}
	for _, q := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if s := c.QueryParam(q.name); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				bad[q.name] = "must be an RFC 3339 time"
			}
			*q.dst = t
		}
	}
	if len(bad) > 0 {
		return f, Invalid(bad)
	}
	return f, nil
}

// HashKey returns the hex SHA-256 of an API key, as stored.
func HashKey(key string) string {
	s := sha256.Sum256([]byte(key))
	return hex.EncodeToString(s[:])
}

const callerKey = "partnerhub.caller"

// Auth authenticates "Authorization: Bearer <key>" against the store, or
// against static keys (whose Hash is set; the configured admin key), and
// puts the key in the context (see Caller). Path parameters that are not
// UTF-8 text without NUL are then answered 404.
func Auth(st Store, static ...*APIKey) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Request().Header.Get(echo.HeaderAuthorization)
			tok, ok := strings.CutPrefix(h, "Bearer ")
			if !ok || tok == "" {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="partnerhub"`)
				return Errorf(EUNAUTHORIZED, "missing bearer API key")
			}
			hash := HashKey(strings.TrimSpace(tok))
			k := staticKey(static, hash)
			if k == nil {
				var err error
				k, err = st.FindAPIKey(c.Request().Context(), hash)
				if errors.Is(err, ErrNotFound) {
					c.Response().Header().Set("WWW-Authenticate", `Bearer realm="partnerhub"`)
					return Errorf(EUNAUTHORIZED, "invalid API key")
				}
				if err != nil {
					return err
				}
				if k.RevokedAt != nil {
					c.Response().Header().Set("WWW-Authenticate", `Bearer realm="partnerhub", error="invalid_token"`)
					return Errorf(EUNAUTHORIZED, "API key %s… was revoked", k.Prefix)
				}
			}
			c.Set(callerKey, k)
			if err := validParams(c); err != nil {
				return err
			}
			return next(c)
		}
	}
}

// staticKey returns the static key whose hash is hash, or nil.
func staticKey(static []*APIKey, hash string) *APIKey {
	for _, k := range static {
		if subtle.ConstantTimeCompare([]byte(k.Hash), []byte(hash)) == 1 {
			return k
		}
	}
	return nil
}

// validParams refuses path parameters that cannot name anything (ids and
// names are UTF-8 text without NUL, which PostgreSQL would refuse) with
// 404 before they reach the store.
func validParams(c echo.Context) error {
	names := c.ParamNames()
	for i, v := range c.ParamValues() {
		if i < len(names) && !ValidText(v) {
			return Errorf(ENOTFOUND, "nothing has this %s: it is not UTF-8 text without NUL", names[i])
		}
	}
	return nil
}

// ValidText reports whether s is UTF-8 text without NUL, the only text
// the stores hold.
func ValidText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// HasEscapedNUL reports whether the JSON document b holds a NUL written as
// the escape \u0000, which no stored text may contain.
func HasEscapedNUL(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+5 < len(b) && b[i+1] == 'u' && string(b[i+2:i+6]) == "0000" {
			return true
		}
		i++ // the escaped character
	}
	return false
}

// Caller returns the authenticated API key of the request.
func Caller(c echo.Context) *APIKey {
	k, _ := c.Get(callerKey).(*APIKey)
	return k
}

// The role sets routes use. Every route of the API names one of them (or
// RequireRole with its own list); the role table test checks each route
// against every role.
var (
	// AdminOnly: configuration changes and secrets.
	AdminOnly = RequireRole(RoleAdmin)
	// OpsOrAdmin: operations that change no configuration (retry,
	// replay, re-enable, reprocess).
	OpsOrAdmin = RequireRole(RoleAdmin, RoleOps)
	// Staff: reading anything of the program.
	Staff = RequireRole(RoleAdmin, RoleOps, RoleViewer)
	// StaffOrPartner: reading what a partner may also read of its own;
	// the handler scopes a partner caller to its partner (FilterOf,
	// OwnedBy).
	StaffOrPartner = RequireRole(RoleAdmin, RoleOps, RoleViewer, RolePartner)
)

// OwnedBy reports whether the caller may see a row of partnerID: always
// for staff roles, and for a partner key only its own partner's rows.
func OwnedBy(c echo.Context, partnerID string) bool {
	k := Caller(c)
	return k != nil && (k.Role != RolePartner || (k.PartnerID != "" && k.PartnerID == partnerID))
}

// RequireRole refuses callers whose role is not one of roles.
func RequireRole(roles ...string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			k := Caller(c)
			if k == nil {
				return Errorf(EUNAUTHORIZED, "missing bearer API key")
			}
			for _, r := range roles {
				if k.Role == r {
					return next(c)
				}
			}
			return Errorf(EFORBIDDEN, "the %s role may not do this", k.Role)
		}
	}
}

// Bind decodes the JSON body into v. A non-empty body must be
// application/json (or a +json type; no Content-Type is read as JSON),
// valid UTF-8, one JSON value, and name only fields v has: the API's input
// schemas allow no other properties. Another media type is refused with
// 415, everything else with EINVALID naming what is wrong.
func Bind(c echo.Context, v any) error {
	req := c.Request()
	body, err := io.ReadAll(req.Body)
	if err != nil {
		var he *echo.HTTPError
		if errors.As(err, &he) && he.Code == http.StatusRequestEntityTooLarge {
			return he
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return echo.NewHTTPError(http.StatusRequestEntityTooLarge, "request body exceeds the limit")
		}
		return Errorf(EINVALID, "reading request body failed")
	}
	if len(body) == 0 {
		return nil
	}
	if ct := req.Header.Get(echo.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != echo.MIMEApplicationJSON && !strings.HasSuffix(mt, "+json")) {
			return echo.NewHTTPError(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		}
	}
	if !utf8.Valid(body) {
		return Errorf(EINVALID, "malformed JSON body: not valid UTF-8")
	}
	if HasEscapedNUL(body) {
		return Errorf(EINVALID, "malformed JSON body: strings must not contain \\u0000")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil && dec.InputOffset() < int64(len(bytes.TrimRight(body, " \t\r\n"))) {
		return Errorf(EINVALID, "malformed JSON body: more than one JSON value")
	}
	if err == nil {
		return nil
	}
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &ute) && ute.Field != "":
		return &Error{Code: EINVALID, Message: "malformed JSON body: " + ute.Field + " has the wrong type or is out of range",
			Fields: map[string]string{ute.Field: "cannot be " + ute.Value}}
	case errors.As(err, &se):
		return Errorf(EINVALID, "malformed JSON body: %s at byte %d", se.Error(), se.Offset)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name, _ = strconv.Unquote(name)
		return &Error{Code: EINVALID, Message: "unknown field " + strconv.Quote(name) + ": only the documented fields are accepted",
			Fields: map[string]string{name: "is not a known field"}}
	}
	return Errorf(EINVALID, "malformed JSON body")
}
