package plan

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// # The normal form of an address
//
// Every surface that is handed an address as text (policy eval --dest,
// /api/decide, a proxyless xds:/// target, a Host header) calls ParseAddr, so
// that all of them agree on what the text means before a rule is consulted:
//
//   - IPv4 is accepted in every spelling inet_aton(3) accepts (1 to 4 parts,
//     decimal, octal with a leading 0, hex with a leading 0x; the last part
//     fills the remaining bytes), since that is what a socket library would
//     connect to. A name whose last label is numeric but is not such a
//     spelling ("1.2.3.08", "10.0.0.256", "0x") is refused, never treated as
//     a host name (the WHATWG URL standard's "ends in a number" rule).
//   - An IPv6 address that embeds an IPv4 address is that IPv4 address (see
//     EmbeddedIPv4). Zones ("fe80::1%eth0") are refused: they name an
//     interface, and a rule cannot be written for them.
//   - The result is canonical: IPv4 in its 4-byte form.

// ErrNotAddress is wrapped by ParseAddr's error when the text is not an
// address at all (a host name): the caller decides it by name. Any other
// ParseAddr error means the text is a malformed address and must be refused.
var ErrNotAddress = errors.New("not an IP address")

// ParseIPv4Loose parses every form inet_aton(3) accepts: "a.b.c.d",
// "a.b.c" (c fills 16 bits), "a.b" (b fills 24 bits) and "a" (32 bits), each
// part decimal, octal (leading "0") or hex (leading "0x"/"0X"). Unlike
// glibc it accepts nothing after the address (no trailing space or text)
// and it refuses a part that overflows its bytes. ok is false for anything
// else.
func ParseIPv4Loose(s string) (netip.Addr, bool) {
	var parts [4]uint64
	n := 0
	for {
		if n == 4 {
			return netip.Addr{}, false
		}
		v, rest, ok := parseIPv4Part(s)
		if !ok {
			return netip.Addr{}, false
		}
		parts[n] = v
		n++
		if rest == "" {
			break
		}
		if rest[0] != '.' {
			return netip.Addr{}, false
		}
		s = rest[1:]
	}
	// Every part but the last is one byte; the last fills the rest.
	for i := 0; i < n-1; i++ {
		if parts[i] > 0xff {
			return netip.Addr{}, false
		}
	}
	if parts[n-1] >= 1<<(8*(5-n)) {
		return netip.Addr{}, false
	}
	v := parts[n-1]
	for i := 0; i < n-1; i++ {
		v |= parts[i] << (8 * (3 - i))
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// parseIPv4Part reads one inet_aton part from the start of s and returns its
// value and the unread rest. It refuses an empty part, a bare "0x", octal
// digits 8 and 9 and values past 32 bits.
func parseIPv4Part(s string) (uint64, string, bool) {
	base := uint64(10)
	switch {
	case len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		base, s = 16, s[2:]
		if s == "" || s[0] == '.' {
			return 0, "", false // "0x" alone: glibc reads 0, others refuse
		}
	case len(s) >= 1 && s[0] == '0':
		base = 8
	}
	var v uint64
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		var d uint64
		switch {
		case '0' <= c && c <= '9':
			d = uint64(c - '0')
		case base == 16 && 'a' <= c && c <= 'f':
			d = uint64(c-'a') + 10
		case base == 16 && 'A' <= c && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			goto done
		}
		if d >= base {
			return 0, "", false
		}
		v = v*base + d
		if v > 0xffffffff {
			return 0, "", false
		}
	}
done:
	if i == 0 {
		return 0, "", false
	}
	return v, s[i:], true
}

// endsInNumber reports whether the last label of s (after one optional
// trailing dot) is all decimal digits or "0x" followed by hex digits (or
// nothing): text a socket library or browser would read as an IPv4 address,
// never as a name (WHATWG URL standard, "ends in a number checker").
func endsInNumber(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return false
	}
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		for i := 2; i < len(s); i++ {
			if !isHex(s[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// ParseAddr is the one entry point for an address given as text. It returns
// the canonical address (CanonicalAddr, with nat64 the cluster's own NAT64
// prefixes, see Plan.NAT64) for every IPv6 spelling and every inet_aton
// IPv4 spelling (one trailing dot is tolerated on IPv4, as browsers do). It
// returns an error wrapping ErrNotAddress when s is a host name instead, and
// any other error when s is a malformed or ambiguous address, which must be
// refused: a text whose last label is numeric, an IPv6 zone, brackets, an
// empty label, a space or a control character.
func ParseAddr(s string, nat64 []netip.Prefix) (netip.Addr, error) {
	if strings.Contains(s, ":") {
		if strings.ContainsAny(s, "%") {
			return netip.Addr{}, fmt.Errorf("address %q: IPv6 zones are not accepted", s)
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("address %q: %w", s, err)
		}
		return CanonicalAddr(a, nat64), nil
	}
	if a, ok := ParseIPv4Loose(strings.TrimSuffix(s, ".")); ok && s != "." {
		return a, nil
	}
	if strings.HasPrefix(s, ".") || strings.Contains(s, "..") || strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return netip.Addr{}, fmt.Errorf("%q is neither an address nor a host name (empty label, space or control character)", s)
	}
	if endsInNumber(s) {
		return netip.Addr{}, fmt.Errorf("%q is neither an IPv4 address (in any inet_aton form) nor a host name (its last label is numeric)", s)
	}
	return netip.Addr{}, fmt.Errorf("%q: %w", s, ErrNotAddress)
}

// CanonicalAddr returns the address rules are matched on: the embedded IPv4
// address of an IPv6 address that has one (EmbeddedIPv4), else a itself
// without a zone.
func CanonicalAddr(a netip.Addr, nat64 []netip.Prefix) netip.Addr {
	if v4, ok := EmbeddedIPv4(a, nat64); ok {
		return v4
	}
	return a.WithZone("")
}

// Well-known IPv6 ranges that embed IPv4 addresses.
var (
	// NAT64WellKnown is the well-known NAT64 prefix (RFC 6052).
	NAT64WellKnown = netip.MustParsePrefix("64:ff9b::/96")
	// NAT64LocalUse is the local-use NAT64 range (RFC 8215), read with the
	// RFC 6052 /48 layout unless a catalog NAT64 prefix inside it says
	// otherwise.
	NAT64LocalUse = netip.MustParsePrefix("64:ff9b:1::/48")
	// SixToFour is the 6to4 range (RFC 3056): 2002:AABB:CCDD::/48 embeds
	// AA.BB.CC.DD.
	SixToFour = netip.MustParsePrefix("2002::/16")
	// ipv4Compatible is the deprecated IPv4-compatible range ::a.b.c.d
	// (RFC 4291 2.5.5.1); :: and ::1 are not embeddings.
	ipv4Compatible = netip.MustParsePrefix("::/96")
	ipv4Mapped     = netip.MustParsePrefix("::ffff:0:0/96")
)

// NAT64Lengths are the prefix lengths RFC 6052 defines a layout for.
var NAT64Lengths = []int{32, 40, 48, 56, 64, 96}

// ValidNAT64 reports why p cannot be a NAT64 prefix, or nil: it must be an
// IPv6 prefix with no host bits, of a length RFC 6052 defines.
func ValidNAT64(p netip.Prefix) error {
	if !p.Addr().Is6() || p.Addr().Is4In6() {
		return fmt.Errorf("NAT64 prefix %s is not an IPv6 prefix", p)
	}
	if p.Masked() != p {
		return fmt.Errorf("NAT64 prefix %s has host bits set (did you mean %s?)", p, p.Masked())
	}
	for _, n := range NAT64Lengths {
		if p.Bits() == n {
			return nil
		}
	}
	return fmt.Errorf("NAT64 prefix %s: length /%d has no RFC 6052 layout (want /32, /40, /48, /56, /64 or /96)", p, p.Bits())
}

// EmbeddedIPv4 returns the IPv4 address an IPv6 address embeds, and whether
// it embeds one: IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d,
// but not :: or ::1), NAT64 through the well-known prefix 64:ff9b::/96, the
// local-use range 64:ff9b:1::/48 or the cluster's own prefixes nat64 (the
// longest containing prefix wins and gives the RFC 6052 layout; the
// local-use range is read with the /48 layout unless a catalog prefix inside
// it is longer), and 6to4 2002::/16. The RFC 6052 "u" octet (bits 64-71)
// and the suffix are ignored: a translator that does not check them still
// reaches the embedded address. An IPv4 address is returned as itself with
// ok false.
func EmbeddedIPv4(a netip.Addr, nat64 []netip.Prefix) (netip.Addr, bool) {
	if !a.Is6() {
		return a, false
	}
	a = a.WithZone("")
	if a.Is4In6() {
		return a.Unmap(), true
	}
	b := a.As16()
	best := -1
	for _, p := range nat64 {
		if p.Bits() > best && p.Contains(a) {
			best = p.Bits()
		}
	}
	for _, p := range [...]netip.Prefix{NAT64WellKnown, NAT64LocalUse} {
		if p.Bits() > best && p.Contains(a) {
			best = p.Bits()
		}
	}
	if best >= 0 {
		return fromLayout(b, best), true
	}
	switch {
	case SixToFour.Contains(a):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	case ipv4Compatible.Contains(a):
		if v4 := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}); v4.As4() != [4]byte{0, 0, 0, 0} && v4.As4() != [4]byte{0, 0, 0, 1} {
			return v4, true
		}
	}
	return a, false
}

// layoutBytes lists, for an RFC 6052 prefix length, where the four IPv4
// bytes sit in the IPv6 address (section 2.2: bits 64-71, the "u" octet,
// are never used).
func layoutBytes(bits int) [4]int {
	switch bits {
	case 32:
		return [4]int{4, 5, 6, 7}
	case 40:
		return [4]int{5, 6, 7, 9}
	case 48:
		return [4]int{6, 7, 9, 10}
	case 56:
		return [4]int{7, 9, 10, 11}
	case 64:
		return [4]int{9, 10, 11, 12}
	}
	return [4]int{12, 13, 14, 15}
}

func fromLayout(b [16]byte, bits int) netip.Addr {
	l := layoutBytes(bits)
	return netip.AddrFrom4([4]byte{b[l[0]], b[l[1]], b[l[2]], b[l[3]]})
}

// embed writes v4 into prefix p's address with the layout of p's length.
func embed(p netip.Prefix, v4 [4]byte) netip.Addr {
	b := p.Addr().As16()
	for i, at := range layoutBytes(p.Bits()) {
		b[at] = v4[i]
	}
	return netip.AddrFrom16(b)
}

// EmbeddingPrefixes returns IPv6 prefixes that together cover every IPv6
// address whose embedded IPv4 address (EmbeddedIPv4, with the same nat64)
// lies in the IPv4 prefix p; nil when p is not IPv4. Enforcers that match
// destination IPs (the sidecar's filter chains) add them beside p.
//
// The set is exact for IPv4-mapped, IPv4-compatible, 6to4 and the /32 and
// /96 NAT64 layouts, and for the /40, /48 and /56 layouts when p ends before
// the "u" octet (bits 64-71). When p's bits reach past the u octet (always
// for the /64 layout), the addresses are not one prefix, since the u octet
// that EmbeddedIPv4 ignores sits inside the embedded bits. The set then holds
// the exact prefix with a zero u octet (the only value RFC 6052 allows) and
// eight prefixes covering every non-zero u octet under the same first 64
// bits: it also covers addresses with a non-zero u octet whose IPv4 address
// shares only p's bits before the u octet (24 for /40, 16 for /48, 8 for
// /56, none for /64). Those addresses are malformed NAT64 addresses; the set
// is never narrower than the truth (fail closed). The ::/96 prefix for a p
// inside 0.0.0.0/31 also holds :: and ::1, which embed nothing. The result
// is sorted and has no duplicates.
func EmbeddingPrefixes(p netip.Prefix, nat64 []netip.Prefix) []netip.Prefix {
	if !p.Addr().Is4() {
		return nil
	}
	p = p.Masked()
	v4 := p.Addr().As4()
	var out []netip.Prefix
	add := func(a netip.Addr, bits int) {
		q := netip.PrefixFrom(a, bits).Masked()
		if !slices.Contains(out, q) {
			out = append(out, q)
		}
	}
	layouts := append([]netip.Prefix{ipv4Mapped, ipv4Compatible, NAT64WellKnown, NAT64LocalUse}, nat64...)
	for _, l := range layouts {
		a := embed(l, v4)
		before := 64 - l.Bits() // IPv4 bits before the u octet
		if l.Bits() == 32 || l.Bits() >= 96 || p.Bits() <= before {
			add(a, l.Bits()+p.Bits())
			continue
		}
		add(a, l.Bits()+p.Bits()+8) // u octet zero
		b := a.As16()
		b[8] = 0
		for k := 0; k < 8; k++ { // u octet 1xxxxxxx, 01xxxxxx, ..., 00000001
			b[8] = 0x80 >> k
			add(netip.AddrFrom16(b), 65+k)
		}
	}
	// 6to4: the IPv4 address is bits 16-47.
	b := SixToFour.Addr().As16()
	copy(b[2:6], v4[:])
	add(netip.AddrFrom16(b), 16+p.Bits())
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	return out
}
