package netguard_test

import (
	"net/netip"
	"testing"

	"github.com/partnerhub/partnerhub/hub/netguard"
)

// TestCloudMetadataRefused checks the instance metadata services of the
// common clouds, in every form an address can take on the way to the
// dialer. They fall in ranges the guard refuses anyway (link-local,
// unique local, CGNAT, IETF protocol assignments): no extra list needed.
func TestCloudMetadataRefused(t *testing.T) {
	for _, tt := range []struct{ name, addr string }{
		{"AWS, GCP, Azure, DigitalOcean, OpenStack IPv4", "169.254.169.254"},
		{"AWS IMDS IPv6 (Nitro)", "fd00:ec2::254"},
		{"AWS ECS task metadata", "169.254.170.2"},
		{"AWS DNS resolver", "169.254.169.253"},
		{"Alibaba Cloud", "100.100.100.200"},
		{"Oracle Cloud", "192.0.0.192"},
		{"IPv4-mapped metadata", "::ffff:169.254.169.254"},
		{"NAT64 metadata", "64:ff9b::a9fe:a9fe"},
		{"6to4 metadata", "2002:a9fe:a9fe::1"},
		{"metadata with a zone", "fe80::a9fe:a9fe%eth0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if netguard.Allowed(nil, netip.MustParseAddr(tt.addr)) {
				t.Errorf("Allowed(%s) = true, want refused", tt.addr)
			}
			loop := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
			if netguard.Allowed(loop, netip.MustParseAddr(tt.addr)) {
				t.Errorf("Allowed(%s) with loopback allowed = true, want refused", tt.addr)
			}
		})
	}
}
