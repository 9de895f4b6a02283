package secretscan

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// MinFingerprintValue is the shortest value MakeFingerprints hashes:
// shorter values are too easy to recover from a salted hash by brute force.
const MinFingerprintValue = 8

// MakeFingerprints reads production secret values and returns their salted
// fingerprints, for the catalog's fingerprints section. Input is either a
// JSON document (every string leaf is a value: `vault kv get -format=json
// secret/prod/app` works as it is) or text with one value per line
// (KEY=value lines contribute their value). The salt must be random and
// kept with the fingerprints; the values never leave this function.
func MakeFingerprints(r io.Reader, salt []byte, source string) (set FingerprintSet, skipped int, err error) {
	if len(salt) < 16 {
		return set, 0, fmt.Errorf("secretscan: fingerprints: salt must be at least 16 bytes")
	}
	data, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return set, 0, fmt.Errorf("secretscan: fingerprints: %w", err)
	}
	var values []string
	if t := bytes.TrimSpace(data); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		var doc any
		if err := json.Unmarshal(t, &doc); err != nil {
			return set, 0, fmt.Errorf("secretscan: fingerprints: input looks like JSON but is not: %w", err)
		}
		var walk func(any)
		walk = func(v any) {
			switch x := v.(type) {
			case string:
				values = append(values, x)
			case map[string]any:
				for _, e := range x {
					walk(e)
				}
			case []any:
				for _, e := range x {
					walk(e)
				}
			}
		}
		walk(doc)
	} else {
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			if k, v, ok := strings.Cut(line, "="); ok && envName([]byte(strings.TrimPrefix(k, "export "))) {
				line = strings.Trim(v, `"'`)
			}
			values = append(values, line)
		}
	}
	set = FingerprintSet{Algorithm: "sha256", Salt: salt, Source: source}
	seen := map[string]bool{}
	for _, v := range values {
		v = strings.TrimSpace(v)
		if len(v) < MinFingerprintValue {
			if v != "" {
				skipped++
			}
			continue
		}
		h := sha256.New()
		h.Write(salt)
		h.Write([]byte(v))
		fp := hex.EncodeToString(h.Sum(nil))
		if !seen[fp] {
			seen[fp] = true
			set.Values = append(set.Values, fp)
		}
	}
	slices.Sort(set.Values) // the order must not reveal the vault's
	return set, skipped, nil
}

// WriteFingerprintsYAML writes a set as a catalog fragment:
//
//	fingerprints:
//	  - algorithm: sha256
//	    salt: "<base64>"
//	    source: "vault export 2026-11-01"
//	    values:
//	      - "<hex sha256(salt || value)>"
func WriteFingerprintsYAML(w io.Writer, set FingerprintSet) error {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	var b strings.Builder
	b.WriteString("fingerprints:\n")
	fmt.Fprintf(&b, "  - algorithm: %s\n    salt: %s\n", set.Algorithm, q(base64.StdEncoding.EncodeToString(set.Salt)))
	if set.Source != "" {
		fmt.Fprintf(&b, "    source: %s\n", q(set.Source))
	}
	b.WriteString("    values:\n")
	for _, v := range set.Values {
		fmt.Fprintf(&b, "      - %s\n", q(v))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
