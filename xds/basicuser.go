package xds

import (
	"errors"
	"fmt"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"

	"github.com/egressguard/egressguard/policy/plan"
)

// Envoy cannot decode base64, so a rule on the user of "Authorization:
// Basic <base64(user:password)>" is compiled into a regular expression over
// the base64 text itself (base64Bytes): the set of texts whose decoded
// bytes start with the wanted bytes. Base64 turns each 3 bytes into 4
// characters, 6 bits each, so a byte constraint fixes whole characters
// where its bits fill one and narrows a character to a class where it
// fills part of one. The text is read as the plan reads it
// (policy/plan/request.go, basicUser and decodeBase64): the standard or
// the URL alphabet, mixed or not, padding absent or exactly what the
// length needs, bits after the last whole byte ignored, never a length of
// 1 modulo 4 (without the "="), at most maxBasicChars characters; so a
// client cannot slip past a rule by choosing another spelling of the same
// bytes.

// maxBasicChars is the longest base64 text (without "=") the plan decodes
// (384 bytes).
const maxBasicChars = 512

// basicLengthRE bounds the base64 text of a Basic value, beside the
// condition's own expression (which does not count).
var basicLengthRE = basicSchemeRE + b64Any + `{0,` + strconv.Itoa(maxBasicChars) + `}={0,2}`

// basicSchemeRE matches the scheme of "Authorization: Basic <credentials>"
// as the plan reads it: "Basic" in any case, then spaces.
const basicSchemeRE = `(?i:basic) +`

// neverRE matches no string (a user condition no user can meet).
const neverRE = `[^\x00-\x{10FFFF}]`

// basicUserRegex is an RE2 expression over a whole Authorization header
// value that holds exactly when it is Basic credentials whose user meets
// sm: exact or prefix, ASCII case folded with IgnoreCase. The user is the
// decoded text before the first ':', or all of it when it has none. A
// regular expression on the user is refused at translation
// (checkBasicUsers).
func basicUserRegex(sm *plan.StringMatch) string {
	switch {
	case sm.Prefix != "" && !strings.Contains(sm.Prefix, ":"):
		return basicSchemeRE + base64Bytes(literalSets(sm.Prefix, sm.IgnoreCase), true)
	case sm.Prefix == "" && sm.Regex == "" && !strings.Contains(sm.Exact, ":"):
		return basicSchemeRE + `(?:` + base64Bytes(literalSets(sm.Exact+":", sm.IgnoreCase), true) +
			`|` + base64Bytes(literalSets(sm.Exact, sm.IgnoreCase), false) + `)`
	}
	return neverRE // a user never holds ':'
}

// checkBasicUsers refuses conditions on a Basic user that cannot be
// compiled for Envoy: a regular expression on the decoded user.
func checkBasicUsers(p *plan.Plan) error {
	var errs []error
	for _, r := range p.Intercepts() {
		if r.Requests == nil {
			continue
		}
		for _, rr := range r.Requests.Rules {
			for _, h := range rr.Headers {
				if h.BasicUser != nil && h.BasicUser.Regex != "" {
					errs = append(errs, fmt.Errorf("rule %s: request rule %s: a regex on the Basic user cannot be matched at the sidecar (Envoy cannot decode base64); use exact or prefix", r.ID, rr.ID))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// b64Alphabet is the standard base64 alphabet (RFC 4648 §4), index = value.
const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// b64Any is any character of either alphabet.
const b64Any = `[A-Za-z0-9+/_-]`

// b64Rest is the rest of a text after k characters: any characters, as
// long as the total length is not 1 modulo 4, then the padding that
// length needs, or none.
func b64Rest(k int) string {
	var alts []string
	for m := range 4 {
		if (k+m)%4 != 1 {
			alts = append(alts, strings.Repeat(b64Any, m)+b64Padding(k+m))
		}
	}
	return `(?:` + b64Any + `{4})*(?:` + strings.Join(alts, "|") + `)`
}

// b64Padding is the optional padding after n characters (n%4 != 1).
func b64Padding(n int) string {
	switch n % 4 {
	case 2:
		return `(?:==)?`
	case 3:
		return `=?`
	}
	return ""
}

// byteSets is a constraint on decoded bytes: the byte at position i is one
// of sets[i].
type byteSets [][]byte

// literalSets constrains the decoded prefix to s, letters in either case
// when ignoreCase (ASCII, as Envoy's ignore_case).
func literalSets(s string, ignoreCase bool) byteSets {
	out := make(byteSets, len(s))
	for i := range len(s) {
		c := s[i]
		set := []byte{c}
		if ignoreCase {
			if lc := lowerASCII(c); lc != c {
				set = append(set, lc)
			} else if uc := upperASCII(c); uc != c {
				set = append(set, uc)
			}
			slices.Sort(set)
		}
		out[i] = set
	}
	return out
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func upperASCII(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// base64Bytes returns an RE2 expression (for a full match) over base64
// text that holds exactly when the text is valid base64 (as the plan reads
// it) whose decoded bytes start with bytes from sets, followed by anything
// when rest, or are exactly such bytes otherwise.
func base64Bytes(sets byteSets, rest bool) string {
	var b strings.Builder
	q, r := len(sets)/3, len(sets)%3
	for k := range q {
		alternatives(&b, quanta(sets[3*k:3*k+3]))
	}
	if r > 0 {
		// The last bytes fix the characters their bits fill and narrow the
		// one they share with what follows (or with the ignored bits).
		alternatives(&b, quanta(sets[3*q:]))
	}
	k := 4*q + [3]int{0, 2, 3}[r]
	if rest {
		b.WriteString(b64Rest(k))
	} else {
		b.WriteString(b64Padding(k))
	}
	return b.String()
}

// quanta lists the base64 texts of 1 to 3 constrained bytes followed by
// unknown bits: one regular expression per combination of the bytes.
func quanta(sets byteSets) []string {
	var out []string
	vals := make([]byte, len(sets))
	var walk func(i int)
	walk = func(i int) {
		if i == len(sets) {
			out = append(out, encodePartial(vals))
			return
		}
		for _, c := range sets[i] {
			vals[i] = c
			walk(i + 1)
		}
	}
	walk(0)
	slices.Sort(out)
	return slices.Compact(out)
}

// encodePartial is the base64 of 1 to 3 bytes and, after them, unknown
// bits up to a character boundary: a character whose 6 bits are all known
// literally, the last one as the class of the values that agree on its
// known bits.
func encodePartial(vals []byte) string {
	var bits, known uint32
	for _, v := range vals {
		bits = bits<<8 | uint32(v)
		known = known<<8 | 0xff
	}
	n := len(vals) * 8
	if pad := (6 - n%6) % 6; pad > 0 {
		bits, known, n = bits<<pad, known<<pad, n+pad
	}
	var b strings.Builder
	for n > 0 {
		n -= 6
		v, m := (bits>>n)&63, (known>>n)&63
		if m == 63 {
			b.WriteString(b64Char(v))
		} else {
			b.WriteString(charClass(v, m))
		}
	}
	return b.String()
}

// charClass is the class of the characters (either alphabet) whose value
// agrees with v on the bits of mask.
func charClass(v, mask uint32) string {
	if mask == 0 {
		return b64Any
	}
	var b strings.Builder
	b.WriteByte('[')
	for x := uint32(0); x < 62; {
		if x&mask != v&mask {
			x++
			continue
		}
		start := x
		for x+1 < 62 && (x+1)&mask == v&mask && b64Alphabet[x+1] == b64Alphabet[x]+1 {
			x++
		}
		b.WriteByte(b64Alphabet[start])
		if x > start {
			b.WriteByte('-')
			b.WriteByte(b64Alphabet[x])
		}
		x++
	}
	if 62&mask == v&mask {
		b.WriteString(`+\-`)
	}
	if 63&mask == v&mask {
		b.WriteString(`/_`)
	}
	b.WriteByte(']')
	return b.String()
}

// b64Char is the character of value v in either alphabet.
func b64Char(v uint32) string {
	switch v {
	case 62:
		return `[+\-]`
	case 63:
		return `[/_]`
	}
	return string(b64Alphabet[v])
}

func alternatives(b *strings.Builder, alts []string) {
	if len(alts) == 1 {
		b.WriteString(alts[0])
		return
	}
	b.WriteString("(?:" + strings.Join(alts, "|") + ")")
}

// checkRE2 parses expr with RE2's syntax (Go's regexp/syntax, Perl flags,
// as Envoy's google_re2 engine): the generated expressions must compile.
func checkRE2(expr string) error {
	if _, err := syntax.Parse(expr, syntax.Perl); err != nil {
		return fmt.Errorf("regular expression %q: %w", expr, err)
	}
	return nil
}
