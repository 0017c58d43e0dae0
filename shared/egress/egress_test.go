package egress_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"testing"

	"github.com/flowgate/flowgate/shared/egress"
	"github.com/flowgate/flowgate/shared/egress/egresstest"
)

// registries is every entry of the IANA IPv4 and IPv6 special-purpose
// address registries (as of 2025), plus multicast and the reserved IPv6
// blocks. Written out here, apart from the package's own table, so that a
// range dropped there fails here.
var registries = []string{
	// iana-ipv4-special-registry
	"0.0.0.0/8", "0.0.0.0/32", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.0.0.0/24", "192.0.0.0/29", "192.0.0.8/32", "192.0.0.9/32",
	"192.0.0.10/32", "192.0.0.170/32", "192.0.0.171/32", "192.0.2.0/24", "192.31.196.0/24",
	"192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15",
	"198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32",
	// multicast (iana-ipv4-multicast-addresses)
	"224.0.0.0/4",
	// iana-ipv6-special-registry (::ffff:0:0/96 and 64:ff9b::/96 are
	// judged by the IPv4 address they carry; see TestEmbeddedIPv4)
	"::1/128", "::/128", "64:ff9b:1::/48", "100::/64", "100:0:0:1::/64", "2001::/23", "2001::/32",
	"2001:1::1/128", "2001:1::2/128", "2001:1::3/128", "2001:2::/48", "2001:3::/32", "2001:4:112::/48",
	"2001:10::/28", "2001:20::/28", "2001:30::/28", "2001:db8::/32", "2002::/16", "2620:4f:8000::/48",
	"3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10",
	// multicast, deprecated site-local and IPv4-compatible, and blocks
	// outside global unicast (iana-ipv6-address-space)
	"ff00::/8", "fec0::/10", "::/96", "4000::/3", "8000::/1", "::/8",
}

func last(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestEverySpecialPurposeRangeIsRefused(t *testing.T) {
	for _, s := range registries {
		p := netip.MustParsePrefix(s)
		first := p.Masked().Addr()
		for _, a := range []netip.Addr{first, first.Next(), last(p)} {
			if !p.Contains(a) {
				continue
			}
			err := egress.Check(a)
			if err == nil {
				t.Errorf("%s (in %s) is allowed", a, s)
				continue
			}
			if !errors.Is(err, egress.ErrRefused) {
				t.Errorf("%s: error %v does not match ErrRefused", a, err)
			}
			if (egress.Policy{AllowPrivate: true}).CheckAddr(a) != nil {
				t.Errorf("%s refused although private egress is allowed", a)
			}
			if a.Is4() {
				mapped := netip.AddrFrom16(a.As16())
				if egress.Check(mapped) == nil {
					t.Errorf("IPv4-mapped %s is allowed", mapped)
				}
			}
		}
	}
}

func TestEmbeddedIPv4(t *testing.T) {
	for addr, public := range map[string]bool{
		"::ffff:127.0.0.1":       false,
		"::ffff:100.64.0.1":      false,
		"::ffff:169.254.169.254": false,
		"::ffff:8.8.8.8":         true,
		"64:ff9b::a9fe:a9fe":     false, // NAT64 of 169.254.169.254
		"64:ff9b::7f00:1":        false,
		"64:ff9b::c612:1":        false, // 198.18.0.1
		"64:ff9b::f000:1":        false, // 240.0.0.1
		"64:ff9b::808:808":       true,  // NAT64 of 8.8.8.8
		"64:ff9b:1::808:808":     false, // local-use NAT64 is refused whole
		"::7f00:1":               false, // IPv4-compatible 127.0.0.1
		"fe80::1%eth0":           false,
	} {
		if got := egress.Public(netip.MustParseAddr(addr)); got != public {
			t.Errorf("Public(%s) = %v, want %v (%v)", addr, got, public, egress.Check(netip.MustParseAddr(addr)))
		}
	}
	if egress.Public(netip.Addr{}) {
		t.Error("the zero address is public")
	}
}

func TestPublicAddressesNextToSpecialRangesAreAllowed(t *testing.T) {
	for _, s := range []string{
		"8.8.8.8", "1.1.1.1", "9.255.255.255", "11.0.0.0", "100.63.255.255", "100.128.0.0",
		"126.255.255.255", "128.0.0.0", "169.253.255.255", "169.255.0.0", "172.15.255.255",
		"172.32.0.0", "192.0.1.0", "192.167.255.255", "192.169.0.0", "198.17.255.255",
		"198.20.0.0", "223.255.255.255", "2001:4860:4860::8888", "2606:4700::1111",
		"2001:200::1", "2003::1", "3ffe::1", "3fff:1000::1", "2a00:1450:4001::1",
	} {
		if err := egress.Check(netip.MustParseAddr(s)); err != nil {
			t.Errorf("%s refused: %v", s, err)
		}
	}
}

func TestCheckURL(t *testing.T) {
	cases := []struct {
		url          string
		allowPrivate bool
		ok           bool
	}{
		{"https://api.example.com/x", false, true},
		{"http://93.184.216.34/x", false, true},
		{"https://[2606:2800:220:1:248:1893:25c8:1946]/", false, true},
		{"ftp://example.com/x", true, false},
		{"file:///etc/passwd", true, false},
		{"javascript:alert(1)", true, false},
		{"https:///nohost", true, false},
		{"://bad", true, false},
		{"http://127.0.0.1:8080/", false, false},
		{"http://127.0.0.1:8080/", true, true},
		{"http://10.1.2.3/", false, false},
		{"http://169.254.169.254/latest/meta-data", false, false},
		{"http://100.64.0.1/", false, false},
		{"http://198.18.0.1/", false, false},
		{"http://240.0.0.1/", false, false},
		{"http://0.0.0.0/", false, false},
		{"http://[::1]/", false, false},
		{"http://[fe80::1%25eth0]/", false, false},
		{"http://[fd00::1]/", false, false},
		{"http://[::ffff:127.0.0.1]/", false, false},
		{"http://[64:ff9b::a9fe:a9fe]/", false, false},
		{"http://localhost/", false, false},
		{"http://api.localhost./", false, false},
		{"http://2130706433/", false, false},
		{"http://0x7f.1/", false, false},
		{"http://0177.0.0.1/", false, false},
		{"http://123.example.com/", false, true},
	}
	for _, c := range cases {
		err := egress.CheckURL(c.url, c.allowPrivate)
		if (err == nil) != c.ok {
			t.Errorf("CheckURL(%q, %v) = %v, want ok=%v", c.url, c.allowPrivate, err, c.ok)
		}
	}
}

// TestDialerChecksResolvedAddress: a name that resolves to loopback is
// refused by the dialer itself — no URL check stands in front of it here.
func TestDialerChecksResolvedAddress(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "internal") }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	target := "http://rebind.flowgate.test:" + port + "/"
	res := egresstest.Resolver(t, netip.MustParseAddr("127.0.0.1"))

	_, err := egress.Policy{Resolver: res}.Client(egress.ClientOptions{}).Get(target)
	if !errors.Is(err, egress.ErrRefused) {
		t.Fatalf("GET %s = %v, want a refusal", target, err)
	}
	// The same name and resolver reach the server when private egress is
	// allowed: the refusal above came from the policy, not from DNS.
	resp, err := egress.Policy{AllowPrivate: true, Resolver: res}.Client(egress.ClientOptions{}).Get(target)
	if err != nil {
		t.Fatalf("allowed GET: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "internal" {
		t.Fatalf("allowed GET body %q", body)
	}

	if err := (egress.Policy{Resolver: res}).CheckHost(context.Background(), "rebind.flowgate.test"); !errors.Is(err, egress.ErrRefused) {
		t.Fatalf("CheckHost = %v, want a refusal", err)
	}
}

func TestRedirectsAreRechecked(t *testing.T) {
	c := egress.Policy{}.Client(egress.ClientOptions{MaxRedirects: 5})
	first := &http.Request{URL: &url.URL{Scheme: "https", Host: "api.example.com"}}
	for _, to := range []string{"http://100.64.0.1/", "http://[::ffff:127.0.0.1]/", "http://localhost/", "gopher://example.com/"} {
		u, _ := url.Parse(to)
		if err := c.CheckRedirect(&http.Request{URL: u}, []*http.Request{first}); err == nil {
			t.Errorf("redirect to %s followed", to)
		}
	}
	u, _ := url.Parse("https://other.example.com/")
	if err := c.CheckRedirect(&http.Request{URL: u}, []*http.Request{first}); err != nil {
		t.Errorf("redirect to a public name refused: %v", err)
	}
	via := make([]*http.Request, 6)
	if err := c.CheckRedirect(&http.Request{URL: u}, via); err == nil {
		t.Error("a sixth redirect was followed")
	}
	none := egress.Policy{}.Client(egress.ClientOptions{})
	if err := none.CheckRedirect(&http.Request{URL: u}, []*http.Request{first}); !errors.Is(err, http.ErrUseLastResponse) {
		t.Errorf("a client without redirects followed one: %v", err)
	}
}
