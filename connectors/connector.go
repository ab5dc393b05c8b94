// Package connectors verifies and normalizes billing platforms' webhooks.
// Each provider lives in one file (its spec and implementation) with its
// test; the registry lists them, and the /in handler receives them.
package connectors

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/partnerhub/partnerhub/hub"
)

// Connector is one billing platform.
type Connector interface {
	hub.Normalizer
	// Provider is the name sources use ("stripe").
	Provider() string
	// Verify checks the signature of body under the source's secrets at
	// now. It returns the dedupe key and event type, or an error wrapping
	// hub.ErrBadSignature (answered 401 with no detail) or hub.ErrUnparsable.
	Verify(src *hub.Source, h http.Header, body []byte, now time.Time) (hub.Receipt, error)
}

// Registry maps provider names to connectors.
type Registry struct{ m map[string]Connector }

// NewRegistry returns a registry of cs.
func NewRegistry(cs ...Connector) *Registry {
	r := &Registry{m: map[string]Connector{}}
	for _, c := range cs {
		r.m[c.Provider()] = c
	}
	return r
}

// DefaultConfig configures the built-in connectors.
type DefaultConfig struct {
	// Client makes the calls connectors send to provider APIs
	// (WooCommerce reconciliation, Stripe and Paddle backfill). Zero
	// value: a netguard client that reaches public addresses only.
	Client *http.Client
}

// Default returns the registry of every built-in provider with the default
// configuration.
func Default() *Registry { return NewDefault(DefaultConfig{}) }

// NewDefault returns the registry of every built-in provider.
func NewDefault(cfg DefaultConfig) *Registry {
	return NewRegistry(
		NewStripe(StripeConfig{Backfill: StripeBackfillConfig{Client: cfg.Client}}),
		NewShopify(ShopifyConfig{}),
		NewWooCommerce(WooCommerceConfig{Client: cfg.Client}),
		NewPaddle(PaddleConfig{Backfill: PaddleBackfillConfig{Client: cfg.Client}}),
		NewPaddleClassic(PaddleClassicConfig{}),
	)
}

// Get returns the connector of provider.
func (r *Registry) Get(provider string) (Connector, bool) {
	c, ok := r.m[provider]
	return c, ok
}

// Normalizer returns provider's normalizer; it satisfies the hub's lookup.
func (r *Registry) Normalizer(provider string) (hub.Normalizer, bool) {
	c, ok := r.m[provider]
	return c, ok
}

// Reconciler returns provider's reconciler, when its connector polls the
// provider's API for missed webhooks.
func (r *Registry) Reconciler(provider string) (hub.Reconciler, bool) {
	c, ok := r.m[provider]
	if !ok {
		return nil, false
	}
	rec, ok := c.(hub.Reconciler)
	return rec, ok
}

// Providers lists the registered provider names, sorted.
func (r *Registry) Providers() []string {
	out := make([]string, 0, len(r.m))
	for p := range r.m {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// secretsMatch reports whether any of sigs equals mac under the source's
// secret or, during a rotation, its previous secret. Comparisons are
// constant-time.
func secretsMatch(src *hub.Source, mac func(secret string) []byte, sigs [][]byte) bool {
	for _, secret := range []string{src.Secret, src.PreviousSecret} {
		if secret == "" {
			continue
		}
		want := mac(secret)
		for _, sig := range sigs {
			if hmac.Equal(want, sig) {
				return true
			}
		}
	}
	return false
}

// signatureHeader describes a timestamped HMAC header such as Stripe's
// "t=…,v1=…" or Paddle's "ts=…;h1=…".
type signatureHeader struct {
	name, sep, tsKey, sigKey string
	// trim allows spaces and tabs around keys and values.
	trim bool
}

// parse returns the header's timestamp and its decoded hex SHA-256
// signatures. The timestamp must be canonical decimal, so the signed string
// is the header's; undecodable signatures and unknown keys are skipped.
func (f signatureHeader) parse(header string) (int64, [][]byte, error) {
	if strings.TrimSpace(header) == "" {
		return 0, nil, errors.New("missing " + f.name + " header")
	}
	var (
		ts     int64
		seenTS bool
		sigs   [][]byte
	)
	for _, part := range strings.Split(header, f.sep) {
		// Only spaces and tabs separate items; other whitespace is part of
		// a key or value (and makes it unknown or malformed).
		part = strings.Trim(part, " \t")
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return 0, nil, errors.New("malformed " + f.name + " header")
		}
		if f.trim {
			k, v = strings.Trim(k, " \t"), strings.Trim(v, " \t")
		}
		switch k {
		case f.tsKey:
			if seenTS || !hub.IsDigits(v) || len(v) > 18 || (len(v) > 1 && v[0] == '0') {
				return 0, nil, errors.New("malformed timestamp in " + f.name + " header")
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, nil, errors.New("malformed timestamp in " + f.name + " header")
			}
			ts, seenTS = n, true
		case f.sigKey:
			sig, err := hex.DecodeString(v)
			if err != nil || len(sig) != sha256.Size {
				continue
			}
			sigs = append(sigs, sig)
		}
	}
	if !seenTS {
		return 0, nil, errors.New("no timestamp in " + f.name + " header")
	}
	if len(sigs) == 0 {
		return 0, nil, errors.New("no " + f.sigKey + " signature in " + f.name + " header")
	}
	return ts, sigs, nil
}
