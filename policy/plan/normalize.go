package plan

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
)

// maxNameLen is the longest presentation-format DNS name (without the
// trailing dot) that a lookup will consider.
const maxNameLen = 253

// idnaProfile converts Unicode names to their ASCII (punycode) form the way a
// resolver would. It is lenient about the characters hostnames may carry in
// practice (underscores in SRV-style labels, for instance).
var idnaProfile = idna.New(idna.MapForLookup(), idna.Transitional(false), idna.StrictDomainName(false))

// NormalizeHost returns the canonical form of a host name: lower case, no
// trailing dot, internationalised labels in punycode. It accepts the
// wildcard forms "*" and "*.suffix".
func NormalizeHost(h string) (string, error) {
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", errors.New("empty host name")
	}
	if h == "*" {
		return h, nil
	}
	wild := strings.HasPrefix(h, "*.")
	name := h
	if wild {
		name = h[2:]
	}
	if strings.Contains(name, "*") {
		return "", fmt.Errorf("host %q: a wildcard is only allowed as a leading \"*.\"", h)
	}
	out, err := canonicalName(name)
	if err != nil {
		return "", fmt.Errorf("host %q: %w", h, err)
	}
	if wild {
		return "*." + out, nil
	}
	return out, nil
}

func canonicalName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty name")
	}
	ascii := true
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if !ascii {
		a, err := idnaProfile.ToASCII(name)
		if err != nil {
			return "", fmt.Errorf("not a valid internationalised name: %w", err)
		}
		name = a
	}
	name = strings.ToLower(name)
	if len(name) > maxNameLen {
		return "", fmt.Errorf("name longer than %d characters", maxNameLen)
	}
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return "", errors.New("empty label")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", fmt.Errorf("invalid character %q (host names are letters, digits, '-', '_' and '.')", c)
		}
	}
	if _, err := netip.ParseAddr(name); err == nil || endsInNumber(name) {
		return "", errors.New("an IP address (or a name whose last label is numeric, which resolvers read as one) is not a host name (use a CIDR rule)")
	}
	return name, nil
}

// lowerInto writes the lookup form of an ASCII name into buf (lower case,
// trailing dot dropped) and reports its length. ok is false when the name
// needs IDNA conversion, is empty or does not fit. It never allocates.
func lowerInto(buf *[maxNameLen]byte, h string) (n int, ok bool) {
	if len(h) > 0 && h[len(h)-1] == '.' {
		h = h[:len(h)-1]
	}
	if len(h) == 0 || len(h) > maxNameLen {
		return 0, false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c >= 0x80 {
			return 0, false
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return len(h), true
}
