package secretscan

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// TestFingerprintExport: values exported from a vault become catalog
// fingerprints that match the values, and only hashes are written.
func TestFingerprintExport(t *testing.T) {
	salt := []byte("0123456789abcdef-salt")
	for _, tc := range []struct {
		name, in string
		skipped  int
	}{
		{"vault json", `{"data": {"data": {"STRIPE": "` + liveKey + `", "PIN": "1234", "DB": "Zk4Qm8Xv2Lc7Nb1T"}}, "lease_id": ""}`, 1},
		{"lines", "STRIPE=" + liveKey + "\nDB=Zk4Qm8Xv2Lc7Nb1T\nshort\n\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, skipped, err := MakeFingerprints(strings.NewReader(tc.in), salt, "vault prod/app")
			require.NoError(t, err)
			assert.Equal(t, tc.skipped, skipped)
			require.Len(t, set.Values, 2)

			var out bytes.Buffer
			require.NoError(t, WriteFingerprintsYAML(&out, set))
			assert.NotContains(t, out.String(), liveKey)
			assert.NotContains(t, out.String(), "Zk4Qm8Xv2Lc7Nb1T")
			var doc struct {
				Fingerprints []struct {
					Algorithm string   `json:"algorithm"`
					Salt      string   `json:"salt"`
					Source    string   `json:"source"`
					Values    []string `json:"values"`
				} `json:"fingerprints"`
			}
			require.NoError(t, yaml.UnmarshalStrict(out.Bytes(), &doc))
			require.Len(t, doc.Fingerprints, 1)
			fp := doc.Fingerprints[0]
			s, err := DecodeSalt(fp.Salt)
			require.NoError(t, err)
			d, err := NewDetector(Production{Fingerprints: []FingerprintSet{{Algorithm: fp.Algorithm, Salt: s, Values: fp.Values, Source: fp.Source}}})
			require.NoError(t, err)
			fs, _ := d.Scan("app.yaml", []byte("db:\n  pass: Zk4Qm8Xv2Lc7Nb1T\n  other: Zk4Qm8Xv2Lc7Nb1U\n"))
			require.Len(t, fs, 1)
			assert.Equal(t, RuleFingerprint, fs[0].Rule)
			assert.Equal(t, 2, fs[0].Line)
			assert.Contains(t, fs[0].Message, "vault prod/app")
		})
	}
	_, _, err := MakeFingerprints(strings.NewReader("x"), []byte("short"), "")
	require.Error(t, err)
	_, _, err = MakeFingerprints(strings.NewReader("{broken"), salt, "")
	require.Error(t, err)
}

func TestProductionErrors(t *testing.T) {
	_, err := NewDetector(Production{
		AWSAccounts:  []string{"12345"},
		CIDRs:        []string{"not-a-cidr"},
		Fingerprints: []FingerprintSet{{Algorithm: "md5", Salt: []byte("x")}, {Salt: []byte("s"), Values: []string{"zz"}}},
		Providers:    []ProviderEndpoint{{Provider: "p", Live: "api.p.com", Sandbox: "*.sandbox.p.com"}},
	})
	require.Error(t, err)
	for _, want := range []string{"aws_accounts", "zones/cidrs", "fingerprints[0]", "fingerprints[1].values[0]", "providers[0]"} {
		assert.Contains(t, err.Error(), want)
	}
}
