package flow

import (
	"net/netip"
	"testing"
)

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
		{"http://172.16.0.1/", false, false},
		{"http://192.168.1.1/", false, false},
		{"http://169.254.169.254/latest/meta-data", false, false},
		{"http://100.64.0.1/", false, false},
		{"http://0.0.0.0/", false, false},
		{"http://[::1]/", false, false},
		{"http://[fe80::1%25eth0]/", false, false},
		{"http://[fd00::1]/", false, false},
		{"http://[::ffff:127.0.0.1]/", false, false},
		{"http://localhost/", false, false},
		{"http://api.localhost./", false, false},
		{"http://2130706433/", false, false},
		{"http://0x7f.1/", false, false},
		{"http://0177.0.0.1/", false, false},
		{"http://123.example.com/", false, true},
	}
	for _, c := range cases {
		err := CheckURL(c.url, c.allowPrivate)
		if (err == nil) != c.ok {
			t.Errorf("CheckURL(%q, %v) = %v, want ok=%v", c.url, c.allowPrivate, err, c.ok)
		}
	}
}

func TestIsPublicAddr(t *testing.T) {
	for addr, public := range map[string]bool{
		"8.8.8.8": true, "2001:4860:4860::8888": true,
		"127.0.0.1": false, "10.0.0.1": false, "::1": false, "fe80::1": false,
		"224.0.0.1": false, "255.255.255.255": false, "192.0.2.1": false, "::ffff:10.0.0.1": false,
	} {
		if got := IsPublicAddr(netip.MustParseAddr(addr)); got != public {
			t.Errorf("IsPublicAddr(%s) = %v", addr, got)
		}
	}
	if IsPublicAddr(netip.Addr{}) {
		t.Error("zero address is public")
	}
}
