package ui

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

const masked = "•••"

// sensitiveKey matches the names of fields that hold secrets or personal
// data: emails, names, addresses, phone numbers.
var sensitiveKey = regexp.MustCompile(`(?i)(e-?mail|name|address|street|line[12]|city|zip|postal|postcode|phone|mobile|` +
	`secret|token|password|passwd|card|iban|tax_?id|vat|ip$|ip_address|browser_ip|birth|ssn|signature|authorization|api_?key)`)

// emailLike finds email addresses in free text.
var emailLike = regexp.MustCompile(`[^\s"'<>@]+@[^\s"'<>@]+\.[A-Za-z]{2,}`)

// maskBody renders a stored raw body for operators with secrets and
// personal data replaced by •••. Bodies that are neither JSON nor form
// data are not shown.
func maskBody(body, encoding string) string {
	raw := []byte(body)
	if encoding == "base64" {
		b, err := base64.StdEncoding.DecodeString(body)
		if err != nil {
			return "(not shown: the body could not be decoded)"
		}
		raw = b
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err == nil {
		out, err := json.MarshalIndent(maskValue("", v), "", "  ")
		if err == nil {
			return string(out)
		}
	}
	if q, err := url.ParseQuery(string(raw)); err == nil && len(q) > 0 && !bytes.ContainsAny(raw, "{}<>\n") {
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			for _, v := range q[k] {
				b.WriteString(k + " = " + maskString(k, v) + "\n")
			}
		}
		return b.String()
	}
	return "(not shown: the body is neither JSON nor form data)"
}

func maskValue(key string, v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = maskValue(k, x)
		}
		return t
	case []any:
		for i, x := range t {
			t[i] = maskValue(key, x)
		}
		return t
	case string:
		return maskString(key, t)
	case json.Number, bool, nil:
		if key != "" && sensitiveKey.MatchString(key) && t != nil {
			return masked
		}
		return t
	}
	return v
}

func maskString(key, s string) string {
	if s == "" {
		return s
	}
	if key != "" && sensitiveKey.MatchString(key) {
		return masked
	}
	// JSON inside a string (Paddle Classic passthrough, metadata blobs).
	if strings.HasPrefix(strings.TrimSpace(s), "{") {
		var inner any
		if json.Unmarshal([]byte(s), &inner) == nil {
			b, _ := json.Marshal(maskValue("", inner))
			return string(b)
		}
	}
	return emailLike.ReplaceAllString(s, masked)
}
