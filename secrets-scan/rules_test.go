package secretscan

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newExampleDetector(t testing.TB) *Detector {
	t.Helper()
	d, err := NewDetector(exampleProduction())
	require.NoError(t, err)
	return d
}

func rulesOf(fs []Finding) []string {
	var ids []string
	for _, f := range fs {
		ids = append(ids, f.Rule)
	}
	return ids
}

// TestRuleExamples runs every rule over its own true and false positives.
func TestRuleExamples(t *testing.T) {
	d := newExampleDetector(t)
	for _, r := range d.Rules() {
		require.NotEmpty(t, append(r.TruePositives, r.UnknownPositives...), "rule %s ships no true positive", r.ID)
		require.NotEmpty(t, r.FalsePositives, "rule %s ships no false positive", r.ID)
		t.Run(r.ID, func(t *testing.T) {
			// kind "" = any production kind (a database URL without a
			// literal password is an endpoint).
			check := func(what string, exs []Example, kind Kind, env Environment) {
				for i, ex := range exs {
					fs, _ := d.Scan(ex.Path, []byte(ex.Content))
					require.Contains(t, rulesOf(fs), r.ID, "%s %d (%s) not found:\n%s", what, i, ex.Path, ex.Content)
					for _, f := range fs {
						if f.Rule == r.ID {
							if kind != "" {
								assert.Equal(t, kind, f.Kind, "%s %d (%s): %s", what, i, ex.Path, f.Message)
							}
							assert.Equal(t, env, f.Environment, "%s %d (%s): %s", what, i, ex.Path, f.Message)
						}
						if f.Kind == KindSecret || f.Kind == KindCredential {
							assert.Contains(t, f.Redacted, "****", "secret not redacted")
						}
					}
				}
			}
			check("true positive", r.TruePositives, "", EnvProduction)
			check("unknown positive", r.UnknownPositives, KindCredential, EnvUnknown)
			for i, ex := range r.FalsePositives {
				fs, _ := d.Scan(ex.Path, []byte(ex.Content))
				for _, f := range fs {
					assert.False(t, f.Rule == r.ID && f.Environment == EnvProduction, "false positive %d (%s) matched:\n%s", i, ex.Path, ex.Content)
				}
			}
		})
	}
}
