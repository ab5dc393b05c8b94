package outbound_test

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/partnerhub/partnerhub/outbound"
)

// The Standard Webhooks specification's published test vector.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorMsgID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorPayload   = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignVector(t *testing.T) {
	got, err := outbound.Sign([]string{vectorSecret}, vectorMsgID, time.Unix(vectorTimestamp, 0), []byte(vectorPayload))
	if err != nil {
		t.Fatal(err)
	}
	if got != vectorSignature {
		t.Errorf("Sign = %q, want %q", got, vectorSignature)
	}
}

func TestSignVerifiesWithReferenceLibrary(t *testing.T) {
	now := time.Now()
	body := []byte(`{"id":"evt_1","type":"ping","data":{}}`)
	other := outbound.NewSecret()

	tests := []struct {
		name    string
		secrets []string
		// verifiers are secrets a receiver may hold; each must verify.
		verifiers []string
	}{
		{name: "one secret", secrets: []string{vectorSecret}, verifiers: []string{vectorSecret}},
		{name: "rotation signs with both", secrets: []string{other, vectorSecret}, verifiers: []string{vectorSecret, other}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := outbound.Sign(tt.secrets, "evt_1", now, body)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(strings.Split(sig, " ")); n != len(tt.secrets) {
				t.Errorf("%d signatures in %q, want %d", n, sig, len(tt.secrets))
			}
			h := http.Header{}
			h.Set("webhook-id", "evt_1")
			h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
			h.Set("webhook-signature", sig)
			for _, s := range tt.verifiers {
				wh, err := standardwebhooks.NewWebhook(s)
				if err != nil {
					t.Fatal(err)
				}
				if err := wh.Verify(body, h); err != nil {
					t.Errorf("Verify with %.10s…: %v", s, err)
				}
				if err := wh.Verify([]byte(`{"tampered":true}`), h); err == nil {
					t.Error("a tampered body verified")
				}
			}
		})
	}
}

func TestSignMalformedSecret(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
	}{
		{name: "no secret", secrets: nil},
		{name: "missing prefix", secrets: []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
		{name: "not base64", secrets: []string{"whsec_not base64!"}},
		{name: "empty key", secrets: []string{"whsec_"}},
		{name: "one bad among good", secrets: []string{vectorSecret, "whsec_%%%"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := outbound.Sign(tt.secrets, "evt_1", time.Unix(1, 0), []byte("{}"))
			if err == nil {
				t.Fatalf("Sign = %q, want an error", got)
			}
			if len(tt.secrets) > 0 && !errors.Is(err, outbound.ErrMalformedSecret) {
				t.Errorf("error = %v, want ErrMalformedSecret", err)
			}
		})
	}
}

func TestNewSecret(t *testing.T) {
	seen := map[string]bool{}
	for range 10 {
		s := outbound.NewSecret()
		raw, ok := strings.CutPrefix(s, "whsec_")
		if !ok {
			t.Fatalf("secret %q lacks the whsec_ prefix", s)
		}
		key, err := base64.StdEncoding.DecodeString(raw)
		if err != nil || len(key) != 24 {
			t.Fatalf("secret %q: key of %d bytes, error %v; want 24 bytes", s, len(key), err)
		}
		if seen[s] {
			t.Fatalf("secret %q repeated", s)
		}
		seen[s] = true
		if _, err := standardwebhooks.NewWebhook(s); err != nil {
			t.Errorf("reference library refuses %q: %v", s, err)
		}
	}
}
