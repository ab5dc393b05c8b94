// Package hub owns partnerhub's domain: every persisted type (programs,
// sources, inbound events, conversions, refunds, partners, commissions and
// their ledger entries, endpoints, events, deliveries, attempts, API keys and
// the audit log), the service that ingests and processes provider events, and
// the HTTP helpers shared by every route (auth, problem+json, pagination).
//
// Implementations of the interfaces declared here live in packages named
// after their dependency: hub/store (SQL), hub/queue (asynq).
package hub

import (
	"errors"
	"fmt"
)

// Error codes. Each maps to one HTTP status in StatusOf.
const (
	ECONFLICT     = "conflict"
	EINTERNAL     = "internal"
	EINVALID      = "invalid"
	ENOTFOUND     = "not_found"
	EUNAUTHORIZED = "unauthorized"
	EFORBIDDEN    = "forbidden"
	EUNAVAILABLE  = "unavailable"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrNotFound is returned by stores when a row does not exist.
	ErrNotFound = &Error{Code: ENOTFOUND, Message: "not found"}
	// ErrUnavailable wraps failures of a dependency (database, queue) that
	// a caller may retry later.
	ErrUnavailable = &Error{Code: EUNAVAILABLE, Message: "service unavailable"}
	// ErrBadSignature is returned by connectors when a request's signature
	// is missing or does not verify. Callers answer 401 with no detail.
	ErrBadSignature = &Error{Code: EUNAUTHORIZED, Message: "invalid signature"}
	// ErrAlreadyFinished is returned when an inbound event was finished by
	// another run of its job; the run's transaction is rolled back.
	ErrAlreadyFinished = errors.New("inbound event already finished")
	// ErrWaitingForPayment is returned while a link names no known
	// payment yet; the event is retried.
	ErrWaitingForPayment = errors.New("waiting for the payment the event names")
	// ErrUnparsable is returned by normalizers for payloads they cannot
	// read. The inbound event is kept as failed and can be reprocessed.
	ErrUnparsable = &Error{Code: EINVALID, Message: "unparsable payload"}
)

// Error is partnerhub's typed error: a code that maps to an HTTP status, a
// message safe to show to API clients and optional field errors.
type Error struct {
	Code    string
	Message string
	// Fields holds per-field validation messages keyed by JSON field name.
	Fields map[string]string
}

func (e *Error) Error() string {
	if len(e.Fields) == 0 {
		return e.Message
	}
	return fmt.Sprintf("%s: %v", e.Message, e.Fields)
}

// Is matches errors by code, so errors.Is(Errorf(ENOTFOUND, ...), ErrNotFound) holds.
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Code == e.Code
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns an EINVALID error carrying field messages.
func Invalid(fields map[string]string) *Error {
	return &Error{Code: EINVALID, Message: "validation failed", Fields: fields}
}

// ErrorCode returns the code of the first *Error in err's chain, or
// EINTERNAL.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}
