package secretscan

import "bytes"

// placeholderAnchors finds any placeholder mark in one pass (an immutable
// table, like the package's compiled regular expressions).
var placeholderAnchors = func() *anchors {
	pats := make([]string, len(placeholderMarks))
	for i, m := range placeholderMarks {
		pats[i] = string(m)
	}
	return newAnchors(pats)
}()

// placeholderMarks are substrings that make a value a template, a
// reference or an obviously fake example rather than a secret.
var placeholderMarks = [][]byte{
	[]byte("${"), []byte("{{"), []byte("$("), []byte("%("), []byte("#{"),
	[]byte("ENC["), []byte("vault:"), []byte("ref+"), []byte("secretRef"), []byte("secretKeyRef"),
	[]byte("arn:aws:secretsmanager"), []byte("projects/"), []byte("sm://"), []byte("op://"), []byte("akv://"),
	[]byte("REDACTED"), []byte("redacted"), []byte("Redacted"), []byte("changeme"), []byte("CHANGEME"), []byte("ChangeMe"),
	[]byte("EXAMPLE"), []byte("example"), []byte("Example"), []byte("placeholder"), []byte("PLACEHOLDER"),
	[]byte("dummy"), []byte("DUMMY"), []byte("your_"), []byte("YOUR_"), []byte("your-"), []byte("YOUR-"),
	[]byte("xxxx"), []byte("XXXX"), []byte("****"), []byte("...."), []byte("…"), []byte("<"), []byte(">"),
	[]byte("0000000"), []byte("1234567"), []byte("abcdefg"), []byte("ABCDEFG"),
	[]byte("POSTMARK_API_TEST"), []byte("insert"), []byte("INSERT"), []byte("replace"), []byte("REPLACE"),
}

// fillerMarks are the placeholderMarks that random text contains by
// chance ("xxxx" in a 190-character Adyen key): they make a placeholder
// only of a short value. Long fakes ("sk_live_xxxxxxxx…") are runs that
// lowDiversity catches.
var fillerMarks = func() uint64 {
	var m uint64
	for i, p := range placeholderMarks {
		switch string(p) {
		case "xxxx", "XXXX", "****", "....":
			m |= 1 << uint(i)
		}
	}
	return m
}()

// maxFillerPlaceholder is the longest value a filler mark makes a
// placeholder.
const maxFillerPlaceholder = 16

// isPlaceholder reports whether a candidate value is a placeholder, a
// reference to a secret store, or too uniform to be a generated secret.
func isPlaceholder(v []byte) bool {
	if m := placeholderAnchors.mask(v); m&^fillerMarks != 0 || m != 0 && len(v) <= maxFillerPlaceholder {
		return true
	}
	return lowDiversity(v)
}

// lowDiversity: fewer than 6 distinct bytes, or a run of 7 equal bytes.
func lowDiversity(v []byte) bool {
	var seen [256]bool
	distinct, run := 0, 0
	for i, c := range v {
		if !seen[c] {
			seen[c] = true
			distinct++
		}
		if i > 0 && v[i-1] == c {
			run++
			if run >= 6 {
				return true
			}
		} else {
			run = 0
		}
	}
	return distinct < 6
}

// isReferenceValue reports whole values that point at a secret elsewhere
// instead of holding it (checked on the whole value, before any rule).
func isReferenceValue(v []byte) bool {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return true
	}
	switch {
	case v[0] == '$' && len(v) > 1 && (v[1] == '{' || v[1] == '(' || isIdentByte(v[1])): // $VAR, ${VAR}
		return true
	case bytes.HasPrefix(v, []byte("vault:")), bytes.HasPrefix(v, []byte("ref+")),
		bytes.HasPrefix(v, []byte("ENC[")), bytes.HasPrefix(v, []byte("AgB")) && len(v) > 300: // sops, sealed-secrets ciphertext
		return true
	}
	return false
}

func isIdentByte(c byte) bool {
	return c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
}
