// Package netguard owns the SSRF-safe HTTP client used for every request to
// a URL that a user or a provider chose. The client connects only to public
// unicast addresses, checked on the resolved IP at connect time (so DNS
// rebinding cannot slip past it), never follows redirects and ignores proxy
// settings.
package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// ErrForbiddenAddress is returned (wrapped, through *url.Error) when a
// request would connect to an address the guard refuses.
var ErrForbiddenAddress = errors.New("forbidden address")

// Config configures NewClient.
type Config struct {
	// AllowNets are networks exempt from the guard, e.g. 127.0.0.0/8 for a
	// receiver on the same host. Nil (the default) exempts nothing: only
	// public unicast addresses are dialed.
	AllowNets []netip.Prefix
	// Timeout bounds a whole request, response body included
	// (http.Client.Timeout). Zero means 30 seconds.
	Timeout time.Duration
}

// NewClient returns an HTTP client that dials only public unicast
// addresses or addresses inside cfg.AllowNets, never follows redirects (the
// 3xx response is returned as is) and never uses a proxy.
func NewClient(cfg Config) *http.Client {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	allow := make([]netip.Prefix, len(cfg.AllowNets))
	for i, p := range cfg.AllowNets {
		allow[i] = p.Masked()
	}
	dialer := &net.Dialer{
		Timeout:   10 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			return check(allow, address)
		},
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// check refuses address ("ip:port", as given to net.Dialer.Control) unless
// Allowed says otherwise.
func check(allow []netip.Prefix, address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dialing %q: %w", address, ErrForbiddenAddress)
	}
	if !Allowed(allow, ap.Addr()) {
		return fmt.Errorf("dialing %s: %w", ap.Addr().Unmap(), ErrForbiddenAddress)
	}
	return nil
}

// Allowed reports whether the guard lets a connection to addr through: addr
// is inside one of allow, or is a public unicast address.
func Allowed(allow []netip.Prefix, addr netip.Addr) bool {
	addr = addr.Unmap().WithZone("")
	if !addr.IsValid() {
		return false
	}
	for _, p := range allow {
		if p.Contains(addr) {
			return true
		}
	}
	return public(addr)
}

// special lists ranges that are not public unicast beyond what netip's
// predicates (loopback, private, link-local, multicast, unspecified)
// already catch; see the IANA special-purpose address registries.
var special = mustPrefixes(
	"0.0.0.0/8",       // "this network"
	"100.64.0.0/10",   // carrier-grade NAT
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // documentation (TEST-NET-1)
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // documentation (TEST-NET-2)
	"203.0.113.0/24",  // documentation (TEST-NET-3)
	"240.0.0.0/4",     // reserved, and the limited broadcast address
	"::/96",           // IPv4-compatible (deprecated), :: and ::1
	"100::/64",        // discard-only
	"64:ff9b:1::/48",  // local-use IPv4/IPv6 translation
	"2001::/32",       // Teredo
	"2001:2::/48",     // benchmarking
	"2001:db8::/32",   // documentation
	"fec0::/10",       // site-local (deprecated)
)

var (
	sixToFour = netip.MustParsePrefix("2002::/16")    // embeds IPv4 in bytes 2..5
	nat64     = netip.MustParsePrefix("64:ff9b::/96") // embeds IPv4 in bytes 12..15
)

// public reports whether a is a public unicast address.
func public(a netip.Addr) bool {
	if a.IsLoopback() || a.IsPrivate() || a.IsUnspecified() || a.IsMulticast() ||
		a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
		return false
	}
	b := a.As16()
	switch {
	case sixToFour.Contains(a):
		return public(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
	case nat64.Contains(a):
		return public(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	for _, p := range special {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// ParseNets parses a comma-separated list of CIDRs, as in
// PARTNERHUB_OUTBOUND_ALLOW_NETS ("127.0.0.0/8,::1/128"). A bare address
// counts as a single-address network; blanks are skipped; "" gives nil.
func ParseNets(csv string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var bad []string
	for _, s := range strings.Split(csv, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				bad = append(bad, s)
				continue
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			bad = append(bad, s)
			continue
		}
		out = append(out, p.Masked())
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("parsing allowed networks: invalid CIDR %s", strings.Join(quote(bad), ", "))
	}
	return out, nil
}

func quote(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}
