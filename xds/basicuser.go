package xds

import (
	"fmt"
	"regexp/syntax"
	"slices"
	"strings"
)

// Envoy cannot decode base64, so a rule on the user of "Authorization:
// Basic <base64(user:password)>" is compiled into a regular expression over
// the base64 text itself (base64Prefix): the set of encodings whose decoded
// bytes start with the wanted bytes. Base64 turns each 3 bytes into 4
// characters, 6 bits each, so a byte constraint fixes whole characters
// where its bits fill one and narrows a character to a class where it
// fills part of one. The decoder accepts what Go's base64.StdEncoding
// accepts (padding required, non-zero padding bits tolerated: a client
// cannot escape the match by setting them), so the expression accepts
// exactly those encodings too.

// b64Alphabet is the standard base64 alphabet (RFC 4648 §4), index = value.
const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

const (
	b64Any = `[A-Za-z0-9+/]`
	// b64Tail is any valid continuation after a complete quantum: more
	// quanta, then at most one padded one.
	b64Tail = `(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?`
)

// byteSets is a constraint on a decoded prefix: the byte at position i is
// one of sets[i].
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

// base64Prefix returns an RE2 expression (for a full match) over base64
// text that holds exactly when the text is valid padded base64 whose
// decoded bytes start with bytes from sets, followed by anything.
func base64Prefix(sets byteSets) string {
	var b strings.Builder
	q, r := len(sets)/3, len(sets)%3
	for k := range q {
		alternatives(&b, quanta(sets[3*k:3*k+3]))
	}
	switch r {
	case 0:
		b.WriteString(b64Tail)
	case 1:
		// One byte of the quantum is fixed: its first character, and the
		// top 2 bits of the second; the rest is free, or padding (the
		// decoder ignores the padding bits of the second character).
		alternatives(&b, quanta(sets[3*q:]))
		b.WriteString(`(?:==|` + b64Any + `=|` + b64Any + b64Any + b64Tail + `)`)
	case 2:
		alternatives(&b, quanta(sets[3*q:]))
		b.WriteString(`(?:=|` + b64Any + b64Tail + `)`)
	}
	return b.String()
}

// quanta lists the base64 texts of 1 to 3 constrained bytes: the fixed
// characters, then a character class for the one the next (free) byte
// shares, as one regular expression per combination of bytes.
func quanta(sets byteSets) []string {
	var out []string
	var walk func(i int, acc []byte)
	walk = func(i int, acc []byte) {
		if i == len(sets) {
			out = append(out, encodePartial(acc))
			return
		}
		for _, c := range sets[i] {
			walk(i+1, append(acc, c))
		}
	}
	walk(0, make([]byte, 0, 3))
	slices.Sort(out)
	return slices.Compact(out)
}

// encodePartial is the base64 of 1 to 3 bytes followed by unknown bits:
// complete characters literally, a character holding known and unknown
// bits as the class of every value with those known bits.
func encodePartial(p []byte) string {
	var bits uint32
	for _, c := range p {
		bits = bits<<8 | uint32(c)
	}
	n := len(p) * 8
	var b strings.Builder
	for n >= 6 {
		n -= 6
		b.WriteString(regexpQuote(b64Alphabet[(bits>>n)&63]))
	}
	if n > 0 {
		known := (bits & (1<<n - 1)) << (6 - n) // the top n bits of the character
		lo, hi := known, known|(1<<(6-n)-1)
		b.WriteString(charClass(lo, hi))
	}
	return b.String()
}

// charClass is the class of the alphabet's characters with values lo..hi.
func charClass(lo, hi uint32) string {
	var b strings.Builder
	b.WriteByte('[')
	for v := lo; v <= hi; {
		// Runs of consecutive characters in the alphabet's ranges.
		start := v
		for v+1 <= hi && b64Alphabet[v+1] == b64Alphabet[v]+1 {
			v++
		}
		b.WriteString(regexpQuote(b64Alphabet[start]))
		if v > start {
			b.WriteByte('-')
			b.WriteString(regexpQuote(b64Alphabet[v]))
		}
		v++
	}
	b.WriteByte(']')
	return b.String()
}

func regexpQuote(c byte) string {
	if c == '+' || c == '/' {
		return `\` + string(c)
	}
	return string(c)
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
