package secretscan

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestREADMEListsEveryRule keeps the rule table in README.md in step with
// the code.
func TestREADMEListsEveryRule(t *testing.T) {
	b, err := os.ReadFile("README.md")
	require.NoError(t, err)
	for _, r := range Rules() {
		assert.Contains(t, string(b), "| `"+r.ID+"` | "+r.EnvName()+" | "+string(r.Severity)+" | "+string(r.Kind)+" |", r.ID)
	}
}
