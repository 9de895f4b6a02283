package plan

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseIPv4Loose(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":           "10.0.0.1",
		"167772161":          "10.0.0.1",
		"012.024.0.1":        "10.20.0.1",
		"0xa.0x14.0.1":       "10.20.0.1",
		"0XA.0X14.0.1":       "10.20.0.1",
		"10.20.261":          "10.20.1.5",
		"10.1310981":         "10.20.1.5",
		"0x0A140105":         "10.20.1.5",
		"0":                  "0.0.0.0",
		"00":                 "0.0.0.0",
		"4294967295":         "255.255.255.255",
		"0377.0377.0xff.255": "255.255.255.255",
		"1.2.65535":          "1.2.255.255",
		"1.16777215":         "1.255.255.255",
	} {
		a, ok := ParseIPv4Loose(in)
		require.True(t, ok, in)
		assert.Equal(t, want, a.String(), in)
	}
	for _, in := range []string{
		"", ".", "1.", "1.2.3.4.", ".1.2.3", "1..2", "1.2.3.4.5", "256.0.0.1", "1.2.3.256",
		"1.2.65536", "1.16777216", "4294967296", "08", "1.2.3.09", "0x", "0x.1", "0xg",
		"1.2.3.4 ", " 1.2.3.4", "1.2.3.4x", "-1", "+1", "1.2.3.4/8", "99999999999999999999",
		"0x100000000", "a.b.c.d", "1:2",
	} {
		_, ok := ParseIPv4Loose(in)
		assert.False(t, ok, "%q", in)
	}
}

// spell writes v in a random inet_aton spelling.
func spell(r *rand.Rand, v uint32) string {
	n := 1 + r.IntN(4)
	vals := make([]uint64, n)
	for i := 0; i < n-1; i++ {
		vals[i] = uint64(v>>(24-8*i)) & 0xff
	}
	vals[n-1] = uint64(v) & (1<<(8*(5-n)) - 1)
	parts := make([]string, n)
	for i, x := range vals {
		switch r.IntN(4) {
		case 0:
			parts[i] = fmt.Sprintf("%d", x)
		case 1:
			parts[i] = fmt.Sprintf("0%o", x)
		case 2:
			parts[i] = fmt.Sprintf("0x%x", x)
		default:
			parts[i] = fmt.Sprintf("0X%X", x)
		}
	}
	return strings.Join(parts, ".")
}

// Every spelling of a random address parses back to it, through
// ParseIPv4Loose and ParseAddr alike.
func TestIPv4SpellingsRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 1))
	for range 20000 {
		v := r.Uint32()
		want := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		s := spell(r, v)
		got, ok := ParseIPv4Loose(s)
		require.True(t, ok, s)
		require.Equal(t, want, got, s)
		got, err := ParseAddr(s, nil)
		require.NoError(t, err, s)
		require.Equal(t, want, got, s)
	}
}

func FuzzParseIPv4Loose(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "167772161", "0xa.024.0.1", "1.2.3.08", "0x", "1.2.3.4.", "0377.0377.0377.0377"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := ParseIPv4Loose(s)
		if !ok {
			return
		}
		require.True(t, a.Is4())
		// The dotted form is a fixpoint, and the text did end in a number
		// (so ParseAddr can never take an address for a name).
		again, ok := ParseIPv4Loose(a.String())
		require.True(t, ok)
		require.Equal(t, a, again)
		require.True(t, endsInNumber(s), s)
	})
}

func TestParseAddr(t *testing.T) {
	nat64 := []netip.Prefix{netip.MustParsePrefix("2001:db8:64::/96")}
	for in, want := range map[string]string{
		"10.0.0.1":              "10.0.0.1",
		"10.0.0.1.":             "10.0.0.1",
		"0xa.0x14.0.1":          "10.20.0.1",
		"::ffff:10.0.0.1":       "10.0.0.1",
		"::10.0.0.1":            "10.0.0.1",
		"64:ff9b::a00:1":        "10.0.0.1",
		"64:ff9b:1:a00:0:100::": "10.0.0.1", // local-use, /48 layout (u octet skipped)
		"2002:a00:1::1":         "10.0.0.1",
		"2001:db8:64::10.0.0.1": "10.0.0.1",
		"2001:db8::1":           "2001:db8::1",
		"::1":                   "::1",
		"::":                    "::",
		"fe80::1":               "fe80::1",
	} {
		a, err := ParseAddr(in, nat64)
		require.NoError(t, err, in)
		assert.Equal(t, want, a.String(), in)
	}
	for _, in := range []string{"api.stripe.com", "localhost", "a.b.c.d", "x.0x1g", "example.com."} {
		_, err := ParseAddr(in, nil)
		require.Error(t, err, in)
		assert.ErrorIs(t, err, ErrNotAddress, "%q", in)
	}
	for _, in := range []string{"1.2.3.08", "10.0.0.256", "0x", "foo.123", "foo.0x1f", "1.2.3.4.5", "[::1]", "fe80::1%eth0", " 10.0.0.1", "10.0.0.1 ", "1.2.3.4..", "::g"} {
		_, err := ParseAddr(in, nil)
		require.Error(t, err, in)
		assert.NotErrorIs(t, err, ErrNotAddress, "%q must be refused, not taken for a name", in)
	}
}

func TestEmbeddedIPv4(t *testing.T) {
	own := []netip.Prefix{
		netip.MustParsePrefix("2001:db8:100::/40"),
		netip.MustParsePrefix("2001:db9::/32"),
		netip.MustParsePrefix("64:ff9b:1:abcd::/64"),
	}
	for in, want := range map[string]string{
		"::ffff:1.2.3.4":                  "1.2.3.4",
		"::1.2.3.4":                       "1.2.3.4",
		"::0.0.0.2":                       "0.0.0.2",
		"64:ff9b::1.2.3.4":                "1.2.3.4",
		"64:ff9b:1:0102:0003:0400::":      "1.2.3.4", // /48: bytes 6,7 | u | 9,10
		"64:ff9b:1:abcd:0001:0203:0400:0": "1.2.3.4", // catalog /64 inside local use: bytes 9-12
		"64:ff9b:1:abcd:ff01:0203:0400:0": "1.2.3.4", // u octet ignored
		"2002:0102:0304::":                "1.2.3.4",
		"2001:db8:101:0203:0004::":        "1.2.3.4", // /40: bytes 5,6,7 | u | 9
		"2001:db9:0102:0304::":            "1.2.3.4", // /32: bytes 4-7
	} {
		a, ok := EmbeddedIPv4(netip.MustParseAddr(in), own)
		require.True(t, ok, in)
		assert.Equal(t, want, a.String(), in)
	}
	for _, in := range []string{"::", "::1", "2001:db8::1", "1.2.3.4", "fe80::1", "2001:db8:300::1"} {
		a, ok := EmbeddedIPv4(netip.MustParseAddr(in), own)
		assert.False(t, ok, in)
		assert.Equal(t, in, a.String())
	}
}

func TestValidNAT64(t *testing.T) {
	for _, s := range []string{"2001:db8::/32", "2001:db8:1::/48", "2001:db8::/96", "64:ff9b:1:2::/64"} {
		assert.NoError(t, ValidNAT64(netip.MustParsePrefix(s)), s)
	}
	for _, s := range []string{"10.0.0.0/8", "2001:db8::/33", "2001:db8::1/96", "::ffff:0:0/96", "2001:db8::/128"} {
		assert.Error(t, ValidNAT64(netip.MustParsePrefix(s)), s)
	}
}

// randomNAT64 returns n NAT64 prefixes of random RFC 6052 lengths, none
// overlapping another or a well-known embedding range.
func randomNAT64(r *rand.Rand, n int) []netip.Prefix {
	fixed := []netip.Prefix{ipv4Mapped, ipv4Compatible, NAT64WellKnown, NAT64LocalUse, SixToFour}
	var out []netip.Prefix
	for len(out) < n {
		var b [16]byte
		b[0], b[1] = 0x20, 0x01
		for i := 2; i < 12; i++ {
			b[i] = byte(r.Uint32())
		}
		p := netip.PrefixFrom(netip.AddrFrom16(b), NAT64Lengths[r.IntN(len(NAT64Lengths))]).Masked()
		clash := false
		for _, q := range append(append([]netip.Prefix{}, fixed...), out...) {
			clash = clash || q.Overlaps(p)
		}
		if !clash {
			out = append(out, p)
		}
	}
	return out
}

// randomIn returns a random address inside p.
func randomIn(r *rand.Rand, p netip.Prefix) netip.Addr {
	b := p.Addr().As16()
	var rnd [16]byte
	for i := range rnd {
		rnd[i] = byte(r.Uint32())
	}
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	for i := 0; i < 128; i++ {
		if i >= bits {
			mask := byte(0x80 >> (i % 8))
			b[i/8] = b[i/8]&^mask | rnd[i/8]&mask
		}
	}
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		return a.Unmap()
	}
	return a
}

// EmbeddedIPv4 and EmbeddingPrefixes agree: an address that embeds an
// address of p lies in one of p's embedding prefixes (exact), and an address
// in one of them embeds an address of p, except where the documented
// covering for a non-zero u octet is wider.
func TestEmbeddingPrefixesAgree(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 2))
	for range 300 {
		nat64 := randomNAT64(r, r.IntN(4))
		v4 := netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
		p := netip.PrefixFrom(v4, r.IntN(33)).Masked()
		got := EmbeddingPrefixes(p, nat64)
		in := func(a netip.Addr) bool {
			for _, q := range got {
				if q.Contains(a) {
					return true
				}
			}
			return false
		}
		layouts := append([]netip.Prefix{ipv4Mapped, ipv4Compatible, NAT64WellKnown, NAT64LocalUse, SixToFour}, nat64...)
		// Exactness one way: addresses embedding an address of p.
		for range 200 {
			l := layouts[r.IntN(len(layouts))]
			a := randomIn(r, l)
			e, ok := EmbeddedIPv4(a, nat64)
			if !ok {
				continue
			}
			if p.Contains(e) {
				require.True(t, in(a), "%s embeds %s in %s but is in none of %v", a, e, p, got)
			}
			// The same address with the embedded bits taken from p.
			w := randomIn(r, p)
			var b netip.Addr
			if l == SixToFour {
				bb := a.As16()
				w4 := w.As4()
				copy(bb[2:6], w4[:])
				b = netip.AddrFrom16(bb)
			} else {
				lp := l
				for _, q := range nat64 {
					if q.Contains(a) && q.Bits() > lp.Bits() {
						lp = q
					}
				}
				bb := a.As16()
				for i, at := range layoutBytes(lp.Bits()) {
					bb[at] = w.As4()[i]
				}
				b = netip.AddrFrom16(bb)
			}
			if e, ok := EmbeddedIPv4(b, nat64); ok && p.Contains(e) {
				require.True(t, in(b), "%s embeds %s in %s but is in none of %v", b, e, p, got)
			}
		}
		// The other way: addresses in the prefixes embed an address of p,
		// or carry a non-zero u octet and share p's bits before it.
		for _, q := range got {
			for range 20 {
				a := randomIn(r, q)
				e, ok := EmbeddedIPv4(a, nat64)
				if (a == netip.IPv6Unspecified() || a == netip.IPv6Loopback()) && p.Contains(netip.AddrFrom4([4]byte{0, 0, 0, byte(a.As16()[15])})) {
					continue // documented: ::/96 for p in 0.0.0.0/31
				}
				require.True(t, ok, "%s in %s embeds nothing", a, q)
				if p.Contains(e) {
					continue
				}
				layout := 128
				for _, l := range append([]netip.Prefix{NAT64LocalUse}, nat64...) {
					if l.Contains(a) && (layout == 128 || l.Bits() > layout) {
						layout = l.Bits()
					}
				}
				require.True(t, layout >= 40 && layout <= 64 && a.As16()[8] != 0, "%s in %s embeds %s outside %s", a, q, e, p)
				before := min(64-layout, p.Bits())
				require.True(t, netip.PrefixFrom(p.Addr(), before).Contains(e), "%s embeds %s, outside %s/%d", a, e, p.Addr(), before)
			}
		}
	}
}

func TestEmbeddingPrefixesExamples(t *testing.T) {
	got := EmbeddingPrefixes(netip.MustParsePrefix("10.20.0.0/16"), []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")})
	var s []string
	for _, p := range got {
		s = append(s, p.String())
	}
	assert.Equal(t, []string{
		"::a14:0/112", "::ffff:10.20.0.0/112", "64:ff9b::a14:0/112", "64:ff9b:1:a14::/64",
		"2001:db8:a14::/48", "2002:a14::/32",
	}, s)
	assert.Nil(t, EmbeddingPrefixes(netip.MustParsePrefix("2001:db8::/32"), nil))
	// Past the u octet: the exact zero-u prefix and eight covering prefixes.
	got = EmbeddingPrefixes(netip.MustParsePrefix("10.20.30.0/24"), nil)
	assert.Contains(t, got, netip.MustParsePrefix("64:ff9b:1:a14:1e::/80"))
	assert.Contains(t, got, netip.MustParsePrefix("64:ff9b:1:a14:8000::/65"))
	assert.Contains(t, got, netip.MustParsePrefix("64:ff9b:1:a14:100::/72"))
	assert.Len(t, got, 4+9)
}

// A plan decides an address that embeds IPv4 as that address, with the
// catalog's own NAT64 prefixes too; the IPv6 form is consulted only when no
// rule holds the IPv4 address.
func TestDecideEmbeddedIPv4(t *testing.T) {
	p, err := Compile(Spec{Default: ActionAllow, NAT64: []string{"2001:db8:64::/96"}, Rules: []Rule{
		{ID: "prod", CIDRs: []string{"10.20.0.0/16"}, Action: ActionDeny},
		{ID: "nat64-range", CIDRs: []string{"2001:db8:64::/96"}, Action: ActionDeny},
	}})
	require.NoError(t, err)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("2001:db8:64::/96")}, p.NAT64())
	for _, s := range []string{"10.20.1.5", "::ffff:10.20.1.5", "::10.20.1.5", "64:ff9b::10.20.1.5", "2002:a14:105::1", "2001:db8:64::10.20.1.5", "64:ff9b:1:a14:1:500::"} {
		a, err := ParseAddr(s, p.NAT64())
		require.NoError(t, err)
		assert.Equal(t, "prod", p.Decide(Destination{IP: a}).RuleID(), s)
		assert.Equal(t, "prod", p.Decide(Destination{IP: netip.MustParseAddr(s)}).RuleID(), "%s unparsed", s)
	}
	assert.Equal(t, "nat64-range", p.Decide(Destination{IP: netip.MustParseAddr("2001:db8:64::8.8.8.8")}).RuleID())
	assert.Equal(t, DefaultRuleID, p.Decide(Destination{IP: netip.MustParseAddr("64:ff9b::8.8.8.8")}).RuleID())

	_, err = Compile(Spec{NAT64: []string{"2001:db8::/33"}})
	require.ErrorContains(t, err, "nat64[0]")
	q, err := Compile(Spec{Default: ActionAllow, Rules: p.Spec().Rules})
	require.NoError(t, err)
	assert.NotEqual(t, p.Fingerprint(), q.Fingerprint(), "NAT64 prefixes are part of the fingerprint")
}
