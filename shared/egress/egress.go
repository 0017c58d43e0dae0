// Package egress owns one question: may Flowgate call this address? Every
// outbound call whose target a user chooses — flow `http` steps, webhook
// deliveries, webhook subscription URLs — goes through a Policy.
//
// The check that counts is made at dial time, on the IP address the
// connection is about to use (a net.Dialer ControlContext hook), so a name
// that resolves to a public address when a URL is checked and to an
// internal one when it is called (DNS rebinding) is still refused, and so is
// every redirect hop. The checks on URLs and host names before that only
// give an early, clear answer.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrRefused is matched (errors.Is) by every refusal of the policy.
var ErrRefused = errors.New("egress refused")

// RefusedError says which address was refused and why.
type RefusedError struct {
	Addr   netip.Addr
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("address %s is not public (%s); private egress is not allowed", e.Addr, e.Reason)
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// Check reports why addr may not be called when private egress is not
// allowed, or nil when it may. IPv4-mapped IPv6 addresses are judged by
// their IPv4 address, and well-known NAT64 addresses (64:ff9b::/96) by the
// IPv4 address they embed.
func Check(addr netip.Addr) error {
	if !addr.IsValid() {
		return &RefusedError{Addr: addr, Reason: "invalid address"}
	}
	a := addr.WithZone("").Unmap()
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		v4 := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		if err := Check(v4); err != nil {
			return &RefusedError{Addr: addr, Reason: "NAT64 of " + v4.String() + ": " + err.(*RefusedError).Reason}
		}
		return nil
	}
	for _, s := range refused {
		if s.prefix.Contains(a) {
			return &RefusedError{Addr: addr, Reason: s.name}
		}
	}
	if a.Is6() && !globalUnicast6.Contains(a) {
		return &RefusedError{Addr: addr, Reason: "outside the IPv6 global unicast block 2000::/3"}
	}
	return nil
}

// Public reports whether addr may be called when private egress is not
// allowed.
func Public(addr netip.Addr) bool { return Check(addr) == nil }

// Policy is the egress policy of one service.
type Policy struct {
	// AllowPrivate lets calls reach any address (on-premises targets,
	// tests). Its setting is the service's FLOWGATE_*_ALLOW_PRIVATE.
	AllowPrivate bool
	// Resolver resolves host names when dialing and in CheckHost (nil:
	// net.DefaultResolver). Tests point it at a fake DNS server.
	Resolver *net.Resolver
}

// CheckAddr is Check unless private egress is allowed.
func (p Policy) CheckAddr(addr netip.Addr) error {
	if p.AllowPrivate {
		return nil
	}
	return Check(addr)
}

// control is the dialer's ControlContext hook: it runs after name
// resolution, once per address tried, before connect(2).
func (p Policy) control(_ context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("egress: unexpected dial address %q: %w", address, err)
	}
	return p.CheckAddr(ap.Addr())
}

// Dialer returns a dialer that refuses, at connect time, every address the
// policy refuses.
func (p Policy) Dialer(timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Resolver: p.Resolver}
	if !p.AllowPrivate {
		d.ControlContext = p.control
	}
	return d
}

// ClientOptions shape the HTTP client of a Policy.
type ClientOptions struct {
	// DialTimeout bounds connecting (default 5 s).
	DialTimeout time.Duration
	// MaxRedirects is how many redirects are followed; 0 follows none
	// (the 3xx response is returned). Every hop is checked by CheckURL and
	// again by the dialer.
	MaxRedirects int
	// MaxIdleConnsPerHost (default 8), TLSHandshakeTimeout (default 5 s)
	// and ResponseHeaderTimeout (default none) configure the transport.
	MaxIdleConnsPerHost   int
	TLSHandshakeTimeout   time.Duration
	ResponseHeaderTimeout time.Duration
}

// Client returns an HTTP client that only reaches what the policy allows.
// It uses no proxy from the environment: a proxy would make the dialer
// check the proxy's address instead of the target's.
func (p Policy) Client(o ClientOptions) *http.Client {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.MaxIdleConnsPerHost <= 0 {
		o.MaxIdleConnsPerHost = 8
	}
	if o.TLSHandshakeTimeout <= 0 {
		o.TLSHandshakeTimeout = 5 * time.Second
	}
	tr := &http.Transport{
		DialContext:           p.Dialer(o.DialTimeout).DialContext,
		MaxIdleConnsPerHost:   o.MaxIdleConnsPerHost,
		IdleConnTimeout:       time.Minute,
		TLSHandshakeTimeout:   o.TLSHandshakeTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if o.MaxRedirects == 0 {
			return http.ErrUseLastResponse
		}
		if len(via) > o.MaxRedirects {
			return fmt.Errorf("stopped after %d redirects", o.MaxRedirects)
		}
		return CheckURL(req.URL.String(), p.AllowPrivate)
	}}
}

// CheckURL refuses URLs an outbound call must not use: schemes other than
// http and https, no host, and — unless allowPrivate — hosts that are
// refused addresses, "localhost" and its subdomains, and numeric host forms
// (such as "2130706433" or "0x7f.1") that some resolvers read as IPv4
// addresses. It resolves nothing: the dialer checks what a name resolves to.
func CheckURL(raw string, allowPrivate bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid url: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("url scheme must be http or https, not %q", u.Scheme)
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("url has no host")
	}
	if allowPrivate {
		return nil
	}
	return checkHostLiteral(host)
}

// checkHostLiteral checks what a host says without resolving it; an
// ordinary name passes.
func checkHostLiteral(host string) error {
	if addr, err := netip.ParseAddr(host); err == nil {
		return Check(addr)
	}
	lower := strings.ToLower(strings.TrimSuffix(host, "."))
	if lower == "localhost" || strings.HasSuffix(lower, ".localhost") {
		return fmt.Errorf("%w: host %s is local", ErrRefused, host)
	}
	if numericHost(lower) {
		return fmt.Errorf("%w: host %s looks like a numeric address; write it as a dotted IPv4 or IPv6 address", ErrRefused, host)
	}
	return nil
}

// CheckHost checks a host name now, for an early answer when a target is
// configured: literal addresses, local names and every address the name
// resolves to. Refusals match ErrRefused; a failed lookup is returned as
// the resolver's error (a *net.DNSError or a context error), for the caller
// to decide (the dialer checks again on every call anyway).
func (p Policy) CheckHost(ctx context.Context, host string) error {
	if p.AllowPrivate {
		return nil
	}
	if err := checkHostLiteral(host); err != nil {
		return err
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	res := p.Resolver
	if res == nil {
		res = net.DefaultResolver
	}
	addrs, err := res.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if err := Check(a); err != nil {
			return err
		}
	}
	return nil
}

// numericHost reports whether every label of host is a number (decimal,
// octal or 0x-hex): inet_aton would read it as an IPv4 address.
func numericHost(host string) bool {
	for _, label := range strings.Split(host, ".") {
		if label == "" {
			return false
		}
		l := label
		if strings.HasPrefix(l, "0x") {
			l = l[2:]
			for _, r := range l {
				if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
					return false
				}
			}
			continue
		}
		for _, r := range l {
			if r < '0' || r > '9' {
				return false
			}
		}
	}
	return true
}
