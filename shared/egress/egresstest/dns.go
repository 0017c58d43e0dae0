// Package egresstest gives tests a DNS server that answers every name with
// one address, so a test can prove that a name resolving to an internal
// address is refused where it is dialed (DNS rebinding), not only where a
// URL is checked.
package egresstest

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// Resolver starts a DNS server on 127.0.0.1 that answers every A (or AAAA,
// for an IPv6 addr) query with addr, and returns a resolver that asks only
// it. The server stops when the test ends.
func Resolver(t testing.TB, addr netip.Addr) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("egresstest: listen: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	go serve(pc, addr)
	server := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", server)
	}}
}

func serve(pc net.PacketConn, addr netip.Addr) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
		_ = b.StartQuestions()
		_ = b.Question(q)
		_ = b.StartAnswers()
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}
		switch {
		case q.Type == dnsmessage.TypeA && addr.Is4():
			_ = b.AResource(rh, dnsmessage.AResource{A: addr.As4()})
		case q.Type == dnsmessage.TypeAAAA && addr.Is6():
			_ = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: addr.As16()})
		}
		msg, err := b.Finish()
		if err != nil {
			continue
		}
		_, _ = pc.WriteTo(msg, from)
	}
}

// InternalName is the host name tests resolve (with Resolver) to an
// internal address.
const InternalName = "internal.flowgate.test"

// RefusedTargets are the URLs every dialer must refuse unless private
// egress is allowed: carrier-grade NAT, benchmarking, reserved, IPv4-mapped
// loopback, NAT64 of the cloud metadata address, and InternalName (which a
// Resolver for 127.0.0.1 points at loopback). port ("" for none) is
// appended to each host. Tests must not dial the non-loopback ones with
// private egress allowed: no traffic may leave the machine.
func RefusedTargets(port string) []string {
	hosts := []string{"100.64.0.1", "198.18.0.1", "240.0.0.1", "[::ffff:127.0.0.1]", "[64:ff9b::a9fe:a9fe]", InternalName}
	out := make([]string, len(hosts))
	for i, h := range hosts {
		if port != "" {
			h += ":" + port
		}
		out[i] = "http://" + h + "/"
	}
	return out
}

// LoopbackTargets are the RefusedTargets that lead to 127.0.0.1: the ones
// a test may call with private egress allowed.
func LoopbackTargets(port string) []string {
	all := RefusedTargets(port)
	return []string{all[3], all[5]}
}
