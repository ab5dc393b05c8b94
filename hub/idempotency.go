package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// IdempotencyTTL is how long the answer to a POST sent with an
// Idempotency-Key is kept and replayed.
const IdempotencyTTL = 24 * time.Hour

// IdempotencyStore keeps the answers of POSTs sent with an
// Idempotency-Key.
type IdempotencyStore interface {
	BeginIdempotent(ctx context.Context, r *IdempotentResponse, ttl time.Duration) (*IdempotentResponse, error)
	FinishIdempotent(ctx context.Context, r *IdempotentResponse) error
	ReleaseIdempotent(ctx context.Context, programID, key string) error
}

// Idempotency honours the Idempotency-Key header on POST requests, as
// Stripe's API does. The first request with a key runs and its answer
// (status and body) is kept for IdempotencyTTL; a retry with the same key
// and the same request (method, path and body) gets that answer again,
// with Idempotent-Replayed: true, and changes nothing. Reusing a key for a
// different request is refused (422), and so is a retry while the first
// request is still running (409). Once begun, a request with a key runs
// to its end even if its client hangs up, so that its answer is kept and
// a retry replays it instead of doing the work again. A server error
// (5xx) is not kept, so the request can be retried with the same key.
// Keys are scoped to the caller's program. It must run after Auth.
func Idempotency(st IdempotencyStore) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			key := req.Header.Get("Idempotency-Key")
			if req.Method != http.MethodPost || key == "" {
				return next(c)
			}
			if len(key) > 255 || !printable(key) {
				return Invalid(map[string]string{"Idempotency-Key": "must be 1 to 255 printable ASCII characters"})
			}
			k := Caller(c)
			if k == nil {
				return Errorf(EUNAUTHORIZED, "missing bearer API key")
			}
			body, err := io.ReadAll(req.Body)
			if err != nil {
				return err // the body limit's 413, or a broken connection
			}
			req.Body = io.NopCloser(bytes.NewReader(body))
			h := sha256.New()
			io.WriteString(h, req.Method+" "+req.URL.Path+"?"+req.URL.RawQuery+"\n")
			h.Write(body)
			claim := &IdempotentResponse{ProgramID: k.ProgramID, Key: key, Fingerprint: hex.EncodeToString(h.Sum(nil))}
			ctx := req.Context()
			old, err := st.BeginIdempotent(ctx, claim, IdempotencyTTL)
			if err != nil {
				return err
			}
			if old != nil {
				switch {
				case old.Fingerprint != claim.Fingerprint:
					return &Error{Code: EINVALID, Message: "this Idempotency-Key was used for a different request; use a new key for a new request",
						Fields: map[string]string{"Idempotency-Key": "was used with another method, path or body"}}
				case old.Status == 0:
					return Errorf(ECONFLICT, "a request with this Idempotency-Key is still being processed; retry later")
				}
				c.Response().Header().Set("Idempotent-Replayed", "true")
				if old.ContentType != "" {
					c.Response().Header().Set(echo.HeaderContentType, old.ContentType)
				}
				c.Response().WriteHeader(old.Status)
				_, err := c.Response().Write(old.Body)
				return err
			}
			rec := &recordingWriter{ResponseWriter: c.Response().Writer}
			c.Response().Writer = rec
			c.SetRequest(req.WithContext(context.WithoutCancel(ctx)))
			herr := next(c)
			if herr != nil {
				// Write the error now, so that its answer is what is kept.
				c.Error(herr)
			}
			// The claim is settled even if the client has gone.
			sctx := context.WithoutCancel(ctx)
			status := c.Response().Status
			if status >= 500 || !c.Response().Committed {
				if err := st.ReleaseIdempotent(sctx, k.ProgramID, key); err != nil {
					slog.ErrorContext(ctx, "releasing idempotency key", "error", err)
				}
				return nil
			}
			claim.Status = status
			claim.ContentType = c.Response().Header().Get(echo.HeaderContentType)
			claim.Body = rec.buf.Bytes()
			if err := st.FinishIdempotent(sctx, claim); err != nil {
				slog.ErrorContext(ctx, "storing idempotent response", "error", err)
				_ = st.ReleaseIdempotent(sctx, k.ProgramID, key)
			}
			return nil
		}
	}
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// recordingWriter copies what is written to the client.
type recordingWriter struct {
	http.ResponseWriter
	buf bytes.Buffer
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	w.buf.Write(b)
	return w.ResponseWriter.Write(b)
}

func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
