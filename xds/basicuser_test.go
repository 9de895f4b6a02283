package xds

import (
	"bytes"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBase64Bytes: for random constraints and random texts (encodings of
// matching and non-matching bytes in either alphabet, with and without
// padding, padding bits set, cut short, or mutated), the expression matches
// exactly when the text decodes as the plan decodes Basic credentials
// (decodeLenient) to bytes that start as constrained (rest) or are exactly
// such bytes.
func TestBase64Bytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 4))
	const alphabet = "ACac019:_-xyz:"
	matched, total := 0, 0
	for range 400 {
		want := make([]byte, rng.IntN(9))
		for i := range want {
			want[i] = alphabet[rng.IntN(len(alphabet))]
		}
		ignoreCase := rng.IntN(2) == 0
		sets := literalSets(string(want), ignoreCase)
		rest := rng.IntN(2) == 0 // a prefix; else the whole text
		expr := base64Bytes(sets, rest)
		require.NoError(t, checkRE2(expr))
		re := regexp.MustCompile(`^(?:` + expr + `)$`)
		for range 60 {
			text := randomBase64(rng, want, alphabet)
			got := re.MatchString(text)
			dec, ok := decodeLenient(text)
			var err error
			if !ok {
				err = errors.New("not base64")
			}
			exp := ok && hasPrefixSets(dec, sets) && (rest || len(dec) == len(sets))
			require.Equal(t, exp, got, "want %q (ignore case %v, rest %v), text %q decodes to %q (err %v); expr %s", want, ignoreCase, rest, text, dec, err, expr)
			total++
			if got {
				matched++
			}
		}
	}
	require.Greater(t, matched, total/8, "the generator must produce matches")
	require.Greater(t, total-matched, total/8, "and non-matches")
}

func hasPrefixSets(b []byte, sets byteSets) bool {
	if len(b) < len(sets) {
		return false
	}
	for i, set := range sets {
		ok := false
		for _, c := range set {
			ok = ok || b[i] == c
		}
		if !ok {
			return false
		}
	}
	return true
}

// randomBase64 is the encoding of want (its letters' case flipped at
// random) plus random bytes, then sometimes spoiled: padding bits set,
// cut, a character replaced.
func randomBase64(rng *rand.Rand, want []byte, alphabet string) string {
	b := append([]byte(nil), want...)
	for i := range b {
		if rng.IntN(4) == 0 {
			b[i] ^= 0x20 * byte(rng.IntN(2)) // case flip of letters, something else otherwise
		}
		if rng.IntN(10) == 0 {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
	}
	if rng.IntN(2) == 0 {
		for range rng.IntN(6) {
			b = append(b, byte(rng.IntN(256)))
		}
	}
	if rng.IntN(8) == 0 {
		b = b[:rng.IntN(len(b)+1)]
	}
	enc := base64.StdEncoding
	if rng.IntN(3) == 0 {
		enc = base64.URLEncoding
	}
	if rng.IntN(3) == 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	text := []byte(enc.EncodeToString(b))
	if rng.IntN(8) == 0 {
		text = append(text, "==="[:rng.IntN(4)]...) // wrong padding, mostly
	}
	switch rng.IntN(6) {
	case 0: // set the last character's low bit: padding bits (still the same bytes), or a changed last byte
		if i := len(bytes.TrimRight(text, "=")) - 1; i >= 0 {
			text[i] = b64Alphabet[indexB64(text[i])|1]
		}
	case 1:
		if len(text) > 0 {
			text = text[:rng.IntN(len(text))]
		}
	case 2:
		if len(text) > 0 {
			text[rng.IntN(len(text))] = "A/+=-_ ."[rng.IntN(8)]
		}
	}
	return string(text)
}

func indexB64(c byte) byte {
	for i := range len(b64Alphabet) {
		if b64Alphabet[i] == c {
			return byte(i)
		}
	}
	return 0
}

// decodeLenient decodes base64 as the contract documents the plan's reading
// of Basic credentials: standard or URL alphabet, mixed, padding absent or
// exactly what the length needs, bits after the last whole byte ignored, a
// length of 1 modulo 4 refused.
func decodeLenient(s string) ([]byte, bool) {
	if n := len(s); n%4 == 0 && strings.HasSuffix(s, "==") {
		s = s[:n-2]
	} else if n%4 == 0 && strings.HasSuffix(s, "=") {
		s = s[:n-1]
	}
	if len(s)%4 == 1 {
		return nil, false
	}
	var out []byte
	acc, bits := 0, 0
	for i := range len(s) {
		v := strings.IndexByte(b64Alphabet, s[i])
		switch s[i] {
		case '-':
			v = 62
		case '_':
			v = 63
		}
		if v < 0 {
			return nil, false
		}
		acc = acc<<6 | v
		bits += 6
		if bits >= 8 {
			bits -= 8
			out = append(out, byte(acc>>bits))
			acc &= 1<<bits - 1
		}
	}
	return out, true
}
