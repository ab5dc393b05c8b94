package hub

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
)

// memIdempotency keeps idempotent answers in memory.
type memIdempotency struct {
	mu sync.Mutex
	m  map[string]*IdempotentResponse
}

func (s *memIdempotency) BeginIdempotent(_ context.Context, r *IdempotentResponse, _ time.Duration) (*IdempotentResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[r.Key]; ok {
		return old, nil
	}
	cp := *r
	s.m[r.Key] = &cp
	return nil, nil
}

func (s *memIdempotency) FinishIdempotent(_ context.Context, r *IdempotentResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := *r
	s.m[r.Key] = &cp
	return nil
}

func (s *memIdempotency) ReleaseIdempotent(_ context.Context, _, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

// TestIdempotencyHangUp: a POST with an Idempotency-Key whose client
// hangs up while it runs still runs to its end, and its answer is kept:
// the retry replays it instead of doing the work again.
func TestIdempotencyHangUp(t *testing.T) {
	st := &memIdempotency{m: map[string]*IdempotentResponse{}}
	e := echo.New()
	e.HTTPErrorHandler = ErrorHandler
	calls := 0
	started, release := make(chan struct{}), make(chan struct{})
	var ctxErr error
	e.POST("/things", func(c echo.Context) error {
		calls++
		if calls == 1 {
			close(started)
			<-release
			ctxErr = c.Request().Context().Err()
			if ctxErr != nil {
				return ctxErr
			}
		}
		return c.JSON(http.StatusCreated, map[string]string{"id": "thing_1"})
	}, func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			c.Set(callerKey, &APIKey{ProgramID: DefaultProgramID})
			return next(c)
		}
	}, Idempotency(st))

	post := func(ctx context.Context) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/things", strings.NewReader(`{"a":1}`)).WithContext(ctx)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "k-1")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		post(ctx)
	}()
	<-started
	cancel() // the client hangs up while the work runs
	close(release)
	<-done
	if ctxErr != nil {
		t.Errorf("the handler saw its context end (%v) when the client hung up", ctxErr)
	}
	rec := post(context.Background())
	if rec.Code != http.StatusCreated || rec.Header().Get("Idempotent-Replayed") != "true" || calls != 1 {
		t.Errorf("retry: %d, replayed %q, handler ran %d times; want the kept 201, run once", rec.Code, rec.Header().Get("Idempotent-Replayed"), calls)
	}
}
