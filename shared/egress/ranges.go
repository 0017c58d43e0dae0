package egress

import "net/netip"

// specialRange is one entry of the IANA special-purpose address registries
// (https://www.iana.org/assignments/iana-ipv4-special-registry and
// iana-ipv6-special-registry), or a block reserved elsewhere (multicast,
// IPv6 site-local) that Flowgate must never call.
type specialRange struct {
	prefix netip.Prefix
	name   string
}

func r(p, name string) specialRange { return specialRange{netip.MustParsePrefix(p), name} }

// refused lists every address block an outbound call may not reach unless
// private egress is allowed. Every entry of both registries is refused,
// even the few marked globally reachable (anycast relays and AS112 sinks):
// a webhook or flow step has no business calling them. The exceptions are
// handled in code: 64:ff9b::/96 (well-known NAT64) is judged by the IPv4
// address it embeds, and ::ffff:0:0/96 (IPv4-mapped) is unmapped first.
var refused = []specialRange{
	// IPv4 special-purpose registry.
	r("0.0.0.0/8", `"this network" (RFC 791)`),
	r("10.0.0.0/8", "private-use (RFC 1918)"),
	r("100.64.0.0/10", "shared address space, carrier-grade NAT (RFC 6598)"),
	r("127.0.0.0/8", "loopback (RFC 1122)"),
	r("169.254.0.0/16", "link-local, cloud metadata (RFC 3927)"),
	r("172.16.0.0/12", "private-use (RFC 1918)"),
	r("192.0.0.0/24", "IETF protocol assignments (RFC 6890), DS-Lite, NAT64 discovery, PCP/TURN anycast"),
	r("192.0.2.0/24", "documentation TEST-NET-1 (RFC 5737)"),
	r("192.31.196.0/24", "AS112-v4 (RFC 7535)"),
	r("192.52.193.0/24", "AMT (RFC 7450)"),
	r("192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)"),
	r("192.168.0.0/16", "private-use (RFC 1918)"),
	r("192.175.48.0/24", "direct delegation AS112 service (RFC 7534)"),
	r("198.18.0.0/15", "benchmarking (RFC 2544)"),
	r("198.51.100.0/24", "documentation TEST-NET-2 (RFC 5737)"),
	r("203.0.113.0/24", "documentation TEST-NET-3 (RFC 5737)"),
	r("224.0.0.0/4", "multicast (RFC 5771)"),
	r("240.0.0.0/4", "reserved (RFC 1112)"),
	r("255.255.255.255/32", "limited broadcast (RFC 919)"),

	// IPv6 special-purpose registry. ::ffff:0:0/96 and 64:ff9b::/96 are
	// handled before this list is consulted.
	r("::/128", "unspecified (RFC 4291)"),
	r("::1/128", "loopback (RFC 4291)"),
	r("::/96", "deprecated IPv4-compatible (RFC 4291)"),
	r("64:ff9b:1::/48", "local-use IPv4/IPv6 translation (RFC 8215)"),
	r("100::/64", "discard-only (RFC 6666)"),
	r("100:0:0:1::/64", "dummy IPv6 prefix (RFC 9780)"),
	r("2001::/23", "IETF protocol assignments (RFC 2928): Teredo, benchmarking, ORCHID, AMT, AS112-v6"),
	r("2001:db8::/32", "documentation (RFC 3849)"),
	r("2002::/16", "6to4 (RFC 3056)"),
	r("2620:4f:8000::/48", "direct delegation AS112 service (RFC 7534)"),
	r("3fff::/20", "documentation (RFC 9637)"),
	r("5f00::/16", "segment routing SIDs (RFC 9602)"),
	r("fc00::/7", "unique-local (RFC 4193)"),
	r("fe80::/10", "link-local unicast (RFC 4291)"),
	r("fec0::/10", "deprecated site-local (RFC 3879)"),
	r("ff00::/8", "multicast (RFC 4291)"),
}

// nat64 is the well-known NAT64 prefix (RFC 6052): a public IPv4 address
// behind it is public, a private one is not.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// globalUnicast6 is the only IPv6 block IANA allocates for global unicast;
// anything outside it (other than NAT64 above) is reserved.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")
