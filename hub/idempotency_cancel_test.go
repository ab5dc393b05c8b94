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

// TestIdempotencyCanceledIsNotKept: a POST whose context ends before its
// answer (499) leaves its Idempotency-Key free, so that the retry does
// the work instead of replaying the abandoned answer.
func TestIdempotencyCanceledIsNotKept(t *testing.T) {
	st := &memIdempotency{m: map[string]*IdempotentResponse{}}
	e := echo.New()
	e.HTTPErrorHandler = ErrorHandler
	calls := 0
	e.POST("/things", func(c echo.Context) error {
		calls++
		if calls == 1 {
			<-c.Request().Context().Done()
			return c.Request().Context().Err()
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
	time.AfterFunc(20*time.Millisecond, cancel)
	if rec := post(ctx); rec.Code != StatusClientClosedRequest {
		t.Fatalf("abandoned request: %d, want %d", rec.Code, StatusClientClosedRequest)
	}
	rec := post(context.Background())
	if rec.Code != http.StatusCreated || rec.Header().Get("Idempotent-Replayed") != "" || calls != 2 {
		t.Errorf("retry: %d, replayed %q, handler ran %d times; want 201 from a second run", rec.Code, rec.Header().Get("Idempotent-Replayed"), calls)
	}
	if rec := post(context.Background()); rec.Code != http.StatusCreated || rec.Header().Get("Idempotent-Replayed") != "true" || calls != 2 {
		t.Errorf("second retry: %d, replayed %q, handler ran %d times; want the kept 201", rec.Code, rec.Header().Get("Idempotent-Replayed"), calls)
	}
}
