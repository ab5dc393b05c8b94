package outbound

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// secretPrefix starts every endpoint secret.
const secretPrefix = "whsec_"

// ErrMalformedSecret is returned by Sign for a secret that is not "whsec_"
// followed by non-empty standard base64.
var ErrMalformedSecret = errors.New("malformed webhook secret")

// Sign returns the Standard Webhooks webhook-signature header value for one
// message: "v1,<base64 HMAC-SHA256>" per secret, separated by single spaces
// (several secrets during a rotation). The signed content is
// msgID + "." + unix seconds of ts + "." + body, and the HMAC key is the
// base64-decoded part of the secret after "whsec_".
func Sign(secrets []string, msgID string, ts time.Time, body []byte) (string, error) {
	if len(secrets) == 0 {
		return "", errors.New("signing webhook: no secret")
	}
	var sb strings.Builder
	for i, s := range secrets {
		key, err := secretKey(s)
		if err != nil {
			return "", err
		}
		m := hmac.New(sha256.New, key)
		m.Write([]byte(msgID))
		m.Write([]byte{'.'})
		m.Write(strconv.AppendInt(nil, ts.Unix(), 10))
		m.Write([]byte{'.'})
		m.Write(body)
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString("v1,")
		sb.WriteString(base64.StdEncoding.EncodeToString(m.Sum(nil)))
	}
	return sb.String(), nil
}

// secretKey decodes the HMAC key of a "whsec_" secret.
func secretKey(secret string) ([]byte, error) {
	raw, ok := strings.CutPrefix(secret, secretPrefix)
	if !ok {
		return nil, ErrMalformedSecret
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) == 0 {
		return nil, ErrMalformedSecret
	}
	return key, nil
}

// NewSecret returns a new endpoint secret: "whsec_" + standard base64 of 24
// random bytes.
func NewSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails; it crashes the program instead.
	return secretPrefix + base64.StdEncoding.EncodeToString(b)
}
