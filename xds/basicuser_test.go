package xds

import (
	"encoding/base64"
	"math/rand/v2"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBase64Prefix: for random constraints and random texts (encodings of
// matching and non-matching bytes, with and without padding bits set, cut
// short, or mutated), the expression matches exactly when Go's
// base64.StdEncoding decodes the text to bytes that start as constrained.
func TestBase64Prefix(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 4))
	const alphabet = "ACac019:_-xyz"
	matched, total := 0, 0
	for range 400 {
		want := make([]byte, rng.IntN(9))
		for i := range want {
			want[i] = alphabet[rng.IntN(len(alphabet))]
		}
		ignoreCase := rng.IntN(2) == 0
		sets := literalSets(string(want), ignoreCase)
		expr := base64Prefix(sets)
		require.NoError(t, checkRE2(expr))
		re := regexp.MustCompile(`^(?:` + expr + `)$`)
		for range 60 {
			text := randomBase64(rng, want, alphabet)
			got := re.MatchString(text)
			dec, err := base64.StdEncoding.DecodeString(text)
			exp := err == nil && hasPrefixSets(dec, sets)
			require.Equal(t, exp, got, "want %q (ignore case %v), text %q decodes to %q (err %v); expr %s", want, ignoreCase, text, dec, err, expr)
			total++
			if got {
				matched++
			}
		}
	}
	require.Greater(t, matched, total/5, "the generator must produce matches")
	require.Greater(t, total-matched, total/5, "and non-matches")
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
	for range rng.IntN(6) {
		b = append(b, byte(rng.IntN(256)))
	}
	if rng.IntN(8) == 0 {
		b = b[:rng.IntN(len(b)+1)]
	}
	text := []byte(base64.StdEncoding.EncodeToString(b))
	switch rng.IntN(6) {
	case 0: // set padding bits: still decodes (non-strict)
		if n := len(text); n >= 2 && text[n-1] == '=' {
			i := n - 2
			if text[n-2] == '=' {
				i = n - 3
			}
			v := indexB64(text[i]) | 1
			text[i] = b64Alphabet[v]
		}
	case 1:
		if len(text) > 0 {
			text = text[:rng.IntN(len(text))]
		}
	case 2:
		if len(text) > 0 {
			text[rng.IntN(len(text))] = "A/+=-_ "[rng.IntN(7)]
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
