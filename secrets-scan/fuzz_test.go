package secretscan

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzSeeds are the rule examples and the decoder fixtures.
func fuzzSeeds(f *testing.F) {
	for _, r := range Rules() {
		for _, ex := range append(append(r.TruePositives, r.UnknownPositives...), r.FalsePositives...) {
			f.Add(ex.Path, []byte(ex.Content))
		}
	}
	entries, _ := os.ReadDir("testdata/decoders")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("testdata/decoders", e.Name()))
		if err == nil {
			f.Add(e.Name(), b)
		}
	}
}

// FuzzScan drives every decoder (the path picks it) with arbitrary bytes.
// Invariants: no panic; findings point inside the input; a secret's
// redacted form never holds more than its public prefix.
func FuzzScan(f *testing.F) {
	fuzzSeeds(f)
	d, err := NewDetector(exampleProduction())
	if err != nil {
		f.Fatal(err)
	}
	names := []string{"x.yaml", "x.json", "x.toml", "x.ini", ".env", "x.properties", "x.tfvars", "x.txt"}
	f.Fuzz(func(t *testing.T, name string, content []byte) {
		for _, n := range append(names, name) {
			fs, ns := d.Scan(n, content)
			lines := bytes.Count(content, []byte{'\n'}) + 1
			for _, f := range fs {
				if f.Line < 1 || f.Line > lines || f.Column < 1 {
					t.Fatalf("%s: finding outside the input: %+v (lines %d)", n, f, lines)
				}
				if f.Kind == KindSecret && f.Rule != RuleDatabaseURL && !strings.Contains(f.Redacted, "****") {
					t.Fatalf("%s: secret not redacted: %+v", n, f)
				}
			}
			for _, nt := range ns {
				if nt.Line < 0 || nt.Line > lines {
					t.Fatalf("%s: notice outside the input: %+v", n, nt)
				}
			}
		}
	})
}

// FuzzNestedDecoding wraps content in layers of base64 and JSON strings
// inside one YAML value. Invariants: no panic; every finding points at the
// YAML value's line (positions map back to the original file); a live key
// under at most maxDecodeDepth-1 layers is found; nestedContent never
// returns more than maxDecodedSize.
func FuzzNestedDecoding(f *testing.F) {
	planted := []byte("STRIPE_KEY=" + liveKey + "\n")
	f.Add(planted, uint8(3))
	f.Add(planted, uint8(7))
	f.Add([]byte(`{"type": "service_account", "project_id": "acme-prod", "private_key": "x"}`), uint8(1))
	f.Add([]byte("a: {b: [c, d]}\n"), uint8(2))
	d, err := NewDetector(exampleProduction())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, inner []byte, layers uint8) {
		if out, _ := nestedContent(inner); len(out) > maxDecodedSize {
			t.Fatalf("nestedContent returned %d bytes", len(out))
		}
		v := inner
		n := int(layers % 8)
		for i := range n {
			if i%2 == 0 {
				v = []byte(encodeStd(v))
			} else {
				v, _ = json.Marshal(map[string]string{"v": string(v)})
			}
		}
		q, _ := json.Marshal(string(v))
		fs, _ := d.Scan("values.yaml", append([]byte("wrap:\n  blob: "), append(q, '\n')...))
		found := false
		for _, f := range fs {
			if f.Line != 2 {
				t.Fatalf("finding at line %d, not the value's line 2: %+v", f.Line, f)
			}
			found = found || f.Rule == RuleStripeSecret
		}
		if bytes.Equal(inner, planted) && n < maxDecodeDepth && !found {
			t.Fatalf("live key under %d layers not found: %+v", n, fs)
		}
	})
}

// FuzzDSN: the URL and JDBC parsers never panic, and what they return
// (host, password) is text of the input, never invented.
func FuzzDSN(f *testing.F) {
	f.Add("jdbc:postgresql://app:Zk4@db.prod.example.com:5432/app?user=app&password=Zk4Qm8")
	f.Add("jdbc:oracle:thin:@10.20.4.7:1521:ORCL")
	f.Add("jdbc:sqlserver://db:1433;databaseName=app;password=x")
	f.Add("mongodb+srv://u:p#w/d@a.example.com,b.example.com/db?x=1")
	f.Add("postgres://[::1]:5432/db")
	f.Fuzz(func(t *testing.T, s string) {
		if _, h, _, pw, ok := parseJDBC(s); ok && (!strings.Contains(s, h) || !strings.Contains(s, pw)) {
			t.Fatalf("parseJDBC(%q): host %q password %q not in the input", s, h, pw)
		}
		if strings.Contains(s, "://") {
			_, pw, hosts := parseAuthority(s)
			for _, h := range hosts {
				if !strings.Contains(s, h) {
					t.Fatalf("parseAuthority(%q): host %q not in the input", s, h)
				}
			}
			if !strings.Contains(s, pw) {
				t.Fatalf("parseAuthority(%q): password %q not in the input", s, pw)
			}
		}
	})
}

// FuzzDecodeBase64 checks the Secret-data decoder against the standard
// encoder: a fixpoint for every byte string.
func FuzzDecodeBase64(f *testing.F) {
	f.Add([]byte("sk_live_4eC39HqLyjWDarjtT1zdp7dc"))
	f.Add([]byte{0, 1, 2, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		enc := encodeStd(b)
		got, err := decodeBase64([]byte(enc))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("round trip of %q: %q, %v", b, got, err)
		}
		_, _ = decodeBase64(b) // arbitrary input: no panic
	})
}

// FuzzJWTAndAWS: identity decoders never panic; an AWS key id that decodes
// re-encodes to the same account.
func FuzzJWTAndAWS(f *testing.F) {
	f.Add([]byte("AKIARZPUZDIKGLB5JZPW"))
	f.Add([]byte("eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = jwtClaims(b)
		if acct, ok := awsAccountFromKeyID(b); ok && len(acct) != 12 {
			t.Fatalf("account %q from %q", acct, b)
		}
	})
}

// FuzzIgnorePatterns: any ignore file parses and matches without panic.
func FuzzIgnorePatterns(f *testing.F) {
	f.Add([]byte("build/\n*.log\n!keep.log\n/a/**/b\n[abc]?.txt\n0123456789abcdef0123456789abcdef\n"), "a/x/b")
	f.Fuzz(func(t *testing.T, data []byte, path string) {
		l, _ := parseIgnore("", data)
		_ = ignoreStack{l}.ignored(path, false)
	})
}

func encodeStd(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
