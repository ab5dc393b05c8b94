package netguard_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/partnerhub/partnerhub/hub/netguard"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestClientLoopback(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()

	tests := []struct {
		name      string
		allow     string
		forbidden bool
	}{
		{name: "refused by default", forbidden: true},
		{name: "refused when another net is allowed", allow: "10.0.0.0/8", forbidden: true},
		{name: "allowed with 127.0.0.0/8", allow: "127.0.0.0/8"},
		{name: "allowed with the single address", allow: "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nets, err := netguard.ParseNets(tt.allow)
			if err != nil {
				t.Fatal(err)
			}
			c := netguard.NewClient(netguard.Config{AllowNets: nets})
			defer c.CloseIdleConnections()
			resp, err := c.Get(srv.URL)
			if tt.forbidden {
				if !errors.Is(err, netguard.ErrForbiddenAddress) {
					t.Fatalf("Get = %v, want ErrForbiddenAddress", err)
				}
				var ue *url.Error
				if !errors.As(err, &ue) {
					t.Errorf("error %T is not a *url.Error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || string(b) != "ok" {
				t.Errorf("got %d %q, want 200 \"ok\"", resp.StatusCode, b)
			}
		})
	}
}

func TestClientLocalhostName(t *testing.T) {
	// A host name is checked on the address it resolves to.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	u := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	c := netguard.NewClient(netguard.Config{})
	defer c.CloseIdleConnections()
	resp, err := c.Get(u)
	if err == nil {
		resp.Body.Close()
	}
	if !errors.Is(err, netguard.ErrForbiddenAddress) {
		t.Fatalf("Get(%s) = %v, want ErrForbiddenAddress", u, err)
	}
}

func TestClientRedirectNotFollowed(t *testing.T) {
	var followed bool
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		followed = true
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	c := netguard.NewClient(netguard.Config{AllowNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	defer c.CloseIdleConnections()
	resp, err := c.Post(srv.URL+"/hook", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Errorf("status = %d, want 302", resp.StatusCode)
	}
	if got := resp.Header.Get("Location"); got != "/elsewhere" {
		t.Errorf("Location = %q", got)
	}
	if followed {
		t.Error("the redirect was followed")
	}
}

func TestClientIgnoresProxy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "direct")
	}))
	defer srv.Close()
	// A proxy that is never reachable: the request only succeeds direct.
	t.Setenv("HTTP_PROXY", "http://192.0.2.1:3128")
	t.Setenv("NO_PROXY", "")
	c := netguard.NewClient(netguard.Config{AllowNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	defer c.CloseIdleConnections()
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != "direct" {
		t.Errorf("body = %q", b)
	}
}

func TestAllowed(t *testing.T) {
	loop := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		name  string
		addr  string
		allow []netip.Prefix
		want  bool
	}{
		{"public IPv4", "8.8.8.8", nil, true},
		{"public IPv6", "2606:4700:4700::1111", nil, true},
		{"loopback", "127.0.0.1", nil, false},
		{"loopback elsewhere in 127/8", "127.1.2.3", nil, false},
		{"IPv6 loopback", "::1", nil, false},
		{"IPv4-mapped loopback", "::ffff:127.0.0.1", nil, false},
		{"RFC 1918 10/8", "10.1.2.3", nil, false},
		{"RFC 1918 172.16/12", "172.31.255.255", nil, false},
		{"RFC 1918 192.168/16", "192.168.0.1", nil, false},
		{"IPv4-mapped private", "::ffff:10.0.0.1", nil, false},
		{"unique local", "fd12:3456::1", nil, false},
		{"link-local (cloud metadata)", "169.254.169.254", nil, false},
		{"IPv6 link-local", "fe80::1", nil, false},
		{"CGNAT", "100.64.0.1", nil, false},
		{"unspecified", "0.0.0.0", nil, false},
		{"this network", "0.1.2.3", nil, false},
		{"IPv6 unspecified", "::", nil, false},
		{"multicast", "224.0.0.1", nil, false},
		{"IPv6 multicast", "ff02::1", nil, false},
		{"broadcast", "255.255.255.255", nil, false},
		{"reserved 240/4", "240.0.0.1", nil, false},
		{"documentation", "192.0.2.10", nil, false},
		{"benchmarking", "198.18.0.1", nil, false},
		{"6to4 of a private address", "2002:0a00:0001::1", nil, false},
		{"6to4 of a public address", "2002:0808:0808::1", nil, true},
		{"NAT64 of loopback", "64:ff9b::7f00:1", nil, false},
		{"NAT64 of a public address", "64:ff9b::808:808", nil, true},
		{"loopback allowed", "127.0.0.1", loop, true},
		{"IPv4-mapped loopback allowed", "::ffff:127.0.0.1", loop, true},
		{"IPv6 loopback allowed", "::1", loop, true},
		{"private not in allowed nets", "10.0.0.1", loop, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := netguard.Allowed(tt.allow, netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Errorf("Allowed(%s) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}

func TestParseNets(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []netip.Prefix
		wantErr bool
	}{
		{name: "empty", in: "", want: nil},
		{name: "blanks", in: " , ", want: nil},
		{name: "loopback pair", in: "127.0.0.0/8,::1/128", want: []netip.Prefix{
			netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
		}},
		{name: "spaces and host bits", in: " 10.1.2.3/8 , 192.168.1.7 ", want: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"),
		}},
		{name: "garbage", in: "127.0.0.0/8,nope", wantErr: true},
		{name: "bad bits", in: "10.0.0.0/33", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := netguard.ParseNets(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseNets(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("ParseNets(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}
