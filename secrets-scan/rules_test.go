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
		require.NotEmpty(t, r.TruePositives, "rule %s ships no true positive", r.ID)
		require.NotEmpty(t, r.FalsePositives, "rule %s ships no false positive", r.ID)
		t.Run(r.ID, func(t *testing.T) {
			for i, ex := range r.TruePositives {
				fs, _ := d.Scan(ex.Path, []byte(ex.Content))
				assert.Contains(t, rulesOf(fs), r.ID, "true positive %d (%s) not found:\n%s", i, ex.Path, ex.Content)
				for _, f := range fs {
					if f.Kind == KindSecret {
						assert.Contains(t, f.Redacted, "****", "secret not redacted")
					}
				}
			}
			for i, ex := range r.FalsePositives {
				fs, _ := d.Scan(ex.Path, []byte(ex.Content))
				assert.NotContains(t, rulesOf(fs), r.ID, "false positive %d (%s) matched:\n%s", i, ex.Path, ex.Content)
			}
		})
	}
}
