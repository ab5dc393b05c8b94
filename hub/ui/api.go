package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"

	"github.com/labstack/echo/v4"
)

// apiError is a non-2xx answer of the API.
type apiError struct {
	Status int
	Title  string
	Detail string
	Fields map[string]string
}

func (e *apiError) Error() string {
	msg := e.Title
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	for k, v := range e.Fields {
		msg += fmt.Sprintf("; %s %s", k, v)
	}
	if e.Status == http.StatusForbidden {
		msg = "Your role may not do this (" + msg + ")"
	}
	return msg
}

// forbidden reports whether err is the API's 403.
func forbidden(err error) bool {
	ae, ok := err.(*apiError)
	return ok && ae.Status == http.StatusForbidden
}

// rawResponse is an API answer as it came.
type rawResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// call serves method /api/v1+path in-process with key as the bearer key.
func (u *UI) call(c echo.Context, key, method, path string, q url.Values, in any) rawResponse {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	target := "/api/v1" + path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req := httptest.NewRequestWithContext(c.Request().Context(), method, target, body)
	req.RemoteAddr = c.Request().RemoteAddr
	req.Host = c.Request().Host
	req.Header.Set(echo.HeaderAuthorization, "Bearer "+key)
	req.Header.Set(echo.HeaderAccept, "application/json")
	if in != nil {
		req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	}
	rec := httptest.NewRecorder()
	u.api.ServeHTTP(rec, req)
	return rawResponse{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
}

// do calls the API as s and decodes a 2xx JSON answer into out (when not
// nil). Any other answer is an *apiError.
func (u *UI) do(c echo.Context, s *session, method, path string, q url.Values, in, out any) error {
	r := u.call(c, s.key, method, path, q, in)
	if r.Status < 200 || r.Status > 299 {
		return problemOf(r)
	}
	if out != nil && len(r.Body) > 0 {
		if err := json.Unmarshal(r.Body, out); err != nil {
			return fmt.Errorf("decoding the answer of %s %s: %w", method, path, err)
		}
	}
	return nil
}

func problemOf(r rawResponse) *apiError {
	var p struct {
		Title  string            `json:"title"`
		Detail string            `json:"detail"`
		Errors map[string]string `json:"errors"`
	}
	_ = json.Unmarshal(r.Body, &p)
	return &apiError{Status: r.Status, Title: p.Title, Detail: p.Detail, Fields: p.Errors}
}

// list is the API's list envelope.
type list[T any] struct {
	Data       []T    `json:"data"`
	NextCursor string `json:"next_cursor"`
}
