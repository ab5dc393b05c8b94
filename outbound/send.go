package outbound

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/netguard"
)

// result is the outcome of one request.
type result struct {
	status     int
	latency    time.Duration
	body       string
	headers    map[string]string
	class      string // "" on success
	msg        string
	retryAfter time.Duration
	// canceled is set when the caller's context ended during the attempt.
	canceled error
}

func (r result) ok() bool { return r.class == "" }

// ours reports whether a failure is on partnerhub's side (or an operator
// disabled the endpoint): it says nothing about the endpoint's health.
func (r result) ours() bool {
	switch r.class {
	case "invalid_event", "invalid_secret", "endpoint_disabled":
		return true
	}
	return false
}

// failed reports whether the endpoint failed this attempt: its failing
// time starts or goes on.
func (r result) failed() bool { return !r.ok() && !r.ours() }

// unhealthy reports whether the failure says the endpoint is unwell: the
// breaker counts timeouts, connection errors, 5xx, 408 and 429; an answer
// such as 400 or 404 came back quickly from a live receiver.
func (r result) unhealthy() bool {
	if !r.failed() {
		return false
	}
	if r.status == 0 {
		return true
	}
	return r.status >= 500 || r.status == http.StatusRequestTimeout || r.status == http.StatusTooManyRequests
}

// errorText is the attempt's Error: a short class, then a message.
func (r result) errorText() string {
	if r.class == "" {
		return ""
	}
	if r.msg == "" {
		return r.class
	}
	return r.class + ": " + r.msg
}

// send signs and POSTs the event's envelope to the endpoint: its custom
// headers first, then the headers it cannot override (signature, content
// type, user agent).
func (d *Dispatcher) send(ctx context.Context, evt *hub.Event, ep *hub.Endpoint, now time.Time) result {
	body, err := Envelope(evt)
	if err != nil {
		return result{class: "invalid_event", msg: err.Error()}
	}
	sig, err := Sign(ep.Signing(now), evt.ID, now, body)
	if err != nil {
		return result{class: "invalid_secret", msg: err.Error()}
	}
	actx, cancel := context.WithTimeout(ctx, d.endpointTimeout(ep))
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil || (req.URL.Scheme != "http" && req.URL.Scheme != "https") || req.URL.Host == "" {
		return result{class: "invalid_url", msg: "the endpoint URL is not an http or https URL"}
	}
	for name, value := range ep.Headers {
		if customHeader(name, value) {
			req.Header.Set(name, value)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", d.userAgent)
	req.Header.Set("webhook-id", evt.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", sig)

	start := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		res := result{latency: time.Since(start)}
		if ctx.Err() != nil {
			res.canceled = ctx.Err()
			return res
		}
		res.class, res.msg = classify(err)
		return res
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain)) // lets the connection be reused
	res := result{status: resp.StatusCode, latency: time.Since(start), body: printable(b), headers: keptHeaders(resp.Header)}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return res
	}
	res.class = "http_" + strconv.Itoa(resp.StatusCode)
	res.msg = http.StatusText(resp.StatusCode)
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		res.msg += " (redirects are not followed)"
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		res.retryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
	}
	return res
}

// envelope is the JSON body of every delivery. Field order is fixed, so
// the bytes are the same on every attempt.
type envelope struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	APIVersion string          `json:"api_version"`
	CreatedAt  string          `json:"created_at"`
	ProgramID  string          `json:"program_id"`
	Data       json.RawMessage `json:"data"`
}

// Envelope returns the body sent for evt: {"id", "type", "api_version",
// "created_at", "program_id", "data"}. It depends only on the stored event,
// so every attempt sends the same bytes.
func Envelope(evt *hub.Event) ([]byte, error) {
	data := evt.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(envelope{
		ID:         evt.ID,
		Type:       evt.Type,
		APIVersion: APIVersion,
		CreatedAt:  evt.CreatedAt.UTC().Format(time.RFC3339),
		ProgramID:  evt.ProgramID,
		Data:       data,
	})
	if err != nil {
		return nil, fmt.Errorf("encoding event %s: %w", evt.ID, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// classify names a transport error with a short class and a message that
// does not repeat the URL.
func classify(err error) (class, msg string) {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg = err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	var (
		ne   net.Error
		dnse *net.DNSError
		cve  *tls.CertificateVerificationError
		uae  x509.UnknownAuthorityError
		hne  x509.HostnameError
		rhe  tls.RecordHeaderError
	)
	switch {
	case errors.Is(err, netguard.ErrForbiddenAddress):
		return "forbidden_address", msg
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout", msg
	case errors.As(err, &dnse):
		return "dns_error", msg
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused", msg
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection_reset", msg
	case errors.As(err, &cve), errors.As(err, &uae), errors.As(err, &hne), errors.As(err, &rhe):
		return "tls_error", msg
	}
	return "connection_error", msg
}

// retryAfter parses a Retry-After header (delay in seconds or an HTTP
// date) into a delay from now; 0 when absent or invalid.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(365*24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// printable makes a response body safe to store as text: valid UTF-8,
// without NUL bytes.
func printable(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "")
}
