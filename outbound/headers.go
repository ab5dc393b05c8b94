package outbound

import (
	"net/http"
	"strings"
)

// unsettableHeaders are request headers an endpoint's custom Headers cannot
// set: framing and connection headers, and the ones the dispatcher sets
// (webhook-* are refused by prefix).
var unsettableHeaders = map[string]bool{
	"Host":                true,
	"Content-Length":      true,
	"Content-Type":        true,
	"Content-Encoding":    true,
	"Transfer-Encoding":   true,
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Connection":    true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Upgrade":             true,
	"Expect":              true,
	"User-Agent":          true,
}

// customHeader reports whether an endpoint's custom header may be sent: a
// valid name that is not reserved, and a value without control
// characters. Others are skipped (the API refuses them when they are set).
func customHeader(name, value string) bool {
	if name == "" || !validToken(name) {
		return false
	}
	canon := http.CanonicalHeaderKey(name)
	if unsettableHeaders[canon] || strings.HasPrefix(canon, "Webhook-") {
		return false
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// validToken reports whether s is an RFC 9110 token.
func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// keptResponseHeaders are the response headers an attempt records: what
// helps an operator tell why a receiver answered as it did, and find the
// request in the receiver's own logs. Nothing else is kept (never
// Set-Cookie or other credentials).
var keptResponseHeaders = []string{
	"Content-Type",
	"Content-Length",
	"Date",
	"Server",
	"Location",
	"Retry-After",
	"Www-Authenticate",
	"X-Request-Id",
	"X-Correlation-Id",
	"X-Trace-Id",
	"Traceparent",
	"X-Amzn-Requestid",
	"X-Amzn-Trace-Id",
	"X-Cloud-Trace-Context",
	"Cf-Ray",
	"X-Github-Request-Id",
	"Ratelimit",
	"Ratelimit-Policy",
	"X-Ratelimit-Limit",
	"X-Ratelimit-Remaining",
	"X-Ratelimit-Reset",
}

// maxHeaderValue bounds a recorded header value.
const maxHeaderValue = 256

// keptHeaders returns the recorded subset of response headers, nil when
// none is present. Several values of one header are joined with ", ".
func keptHeaders(h http.Header) map[string]string {
	var out map[string]string
	for _, name := range keptResponseHeaders {
		vs := h[name]
		if len(vs) == 0 {
			continue
		}
		v := strings.Join(vs, ", ")
		if len(v) > maxHeaderValue {
			v = strings.ToValidUTF8(v[:maxHeaderValue], "")
		}
		if out == nil {
			out = make(map[string]string, 4)
		}
		out[name] = printable([]byte(v))
	}
	return out
}
