package plan

import (
	"strings"
)

// BasicUserRegex returns an RE2 expression, to be matched against the whole
// raw value of an Authorization header, that holds exactly when the value is
// a Basic credential whose user m matches (the BasicUser semantics of
// DecideRequest), for the translators of request rules into matchers that
// cannot decode base64 (Envoy's header safe_regex). ok is false for a Regex
// match, which has no such translation, and for a match that holds ":"
// (a user never does).
//
// The expression spells out the base64 of the user's prefix group by group
// (every ASCII case variant with IgnoreCase), either alphabet, then any
// valid continuation with exact or no padding. One difference remains:
// DecideRequest looks at most at maxBasicLen decoded bytes, the expression
// has no such bound.
func BasicUserRegex(m *StringMatch) (expr string, ok bool) {
	switch {
	case m.Regex != "" || strings.Contains(m.Prefix+m.Exact, ":"):
		return "", false
	case m.Prefix != "":
		return basicScheme + b64Prefix(m.Prefix, m.IgnoreCase, false), true
	}
	// Exact: the whole credential is the user, or the user then ":".
	return basicScheme + "(?:" + b64Prefix(m.Exact, m.IgnoreCase, true) + "|" + b64Prefix(m.Exact+":", m.IgnoreCase, false) + ")", true
}

// basicScheme is "Basic" in any ASCII case and the spaces after it.
const basicScheme = "[Bb][Aa][Ss][Ii][Cc] +"

const b64Any = "[A-Za-z0-9+/_-]"

// b64Prefix is the expression for base64 text whose decoding starts with p
// (exactly p when whole) and is valid.
func b64Prefix(p string, ignoreCase, whole bool) string {
	var b strings.Builder
	for i := 0; i < len(p); i += 3 {
		group := p[i:min(i+3, len(p))]
		variants := caseVariants(group, ignoreCase)
		b.WriteString("(?:")
		for j, v := range variants {
			if j > 0 {
				b.WriteByte('|')
			}
			b.WriteString(b64Group(v))
		}
		b.WriteByte(')')
	}
	quadTail := "(?:" + b64Any + "{4})*(?:" + b64Any + "{2}(?:==)?|" + b64Any + "{3}=?)?"
	switch r := len(p) % 3; {
	case whole && r == 0:
	case whole && r == 1:
		b.WriteString("(?:==)?")
	case whole && r == 2:
		b.WriteString("=?")
	case r == 0:
		b.WriteString(quadTail)
	case r == 1: // two characters of the quad written
		b.WriteString("(?:(?:==)?|" + b64Any + "=?|" + b64Any + "{2}" + quadTail + ")")
	default: // three characters written
		b.WriteString("(?:=?|" + b64Any + quadTail + ")")
	}
	return b.String()
}

// b64Group writes the characters one to three bytes fix: all of a full
// group, the leading characters of a partial one and a class for the
// character whose top bits they fix.
func b64Group(g string) string {
	var v uint32
	for i := 0; i < 3; i++ {
		v <<= 8
		if i < len(g) {
			v |= uint32(g[i])
		}
	}
	fixedBits := 8 * len(g)
	var b strings.Builder
	for c := 0; c < 4 && c*6 < fixedBits; c++ {
		val := v >> (18 - 6*c) & 63
		known := min(6, fixedBits-6*c) // leading bits of this character that g fixes
		if known == 6 {
			b.WriteString(b64Class(val, 6))
		} else {
			b.WriteString(b64Class(val>>(6-known), known))
		}
	}
	return b.String()
}

// b64Class is the characters (either alphabet) whose 6-bit value starts
// with the known leading bits top.
func b64Class(top uint32, known int) string {
	var chars []byte
	for v := uint32(0); v < 64; v++ {
		if v>>(6-known) == top {
			chars = append(chars, b64Chars(v)...)
		}
	}
	if len(chars) == 1 {
		return regexpQuote(chars[0])
	}
	var b strings.Builder
	b.WriteByte('[')
	for _, c := range chars {
		if c == '-' || c == '/' || c == '+' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte(']')
	return b.String()
}

func b64Chars(v uint32) []byte {
	const std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	switch v {
	case 62:
		return []byte{'+', '-'}
	case 63:
		return []byte{'/', '_'}
	}
	return []byte{std[v]}
}

func regexpQuote(c byte) string {
	if strings.IndexByte(`\.+*?()|[]{}^$`, c) >= 0 {
		return `\` + string([]byte{c})
	}
	return string([]byte{c})
}

// caseVariants lists s and, with ignoreCase, every ASCII case variant of it.
func caseVariants(s string, ignoreCase bool) []string {
	out := []string{""}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alts := []byte{c}
		if ignoreCase {
			switch {
			case 'a' <= c && c <= 'z':
				alts = append(alts, c-'a'+'A')
			case 'A' <= c && c <= 'Z':
				alts = append(alts, c-'A'+'a')
			}
		}
		next := make([]string, 0, len(out)*len(alts))
		for _, o := range out {
			for _, a := range alts {
				next = append(next, o+string([]byte{a})) // a byte, not a rune
			}
		}
		out = next
	}
	return out
}
