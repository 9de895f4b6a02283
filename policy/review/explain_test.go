package review

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

func TestExplain(t *testing.T) {
	s := loadSide(t, "testdata/diff/widened-exception/head")
	checkout := &inventory.Workload{Environment: "staging", Labels: map[string]string{"app": "checkout"}}
	tests := []struct {
		name string
		w    *inventory.Workload
		dest plan.Destination
		want []string
	}{
		{"exception restates the catalog pattern", checkout, plan.Destination{Host: "files.stripe.com", Port: 443},
			[]string{"decision     allow [exception:checkout-stripe:files.stripe.com]",
				"* host files.stripe.com", "less specific than files.stripe.com",
				"a class overlay rule on the same pattern beats the shared catalog rule",
				"exception checkout-stripe: owner alice@example.com, ticket SEC-123, expires 2027-03-31"}},
		{"port filter and specificity", &inventory.Workload{Environment: "staging"}, plan.Destination{Host: "files.stripe.com", Port: 25},
			[]string{"decision     deny [provider:stripe:files.stripe.com]",
				"provider:smtp-submission:*:25,587: less specific than files.stripe.com",
				"port filter 587 does not include port 25", "provider stripe (category payment)"}},
		{"dns lookup skips port filters", &inventory.Workload{Environment: "staging"}, plan.Destination{Host: "mail.example.org"},
			[]string{"decision     allow [default]", "port filter 25, but the port is unknown", "no pattern matched"}},
		{"cidr", &inventory.Workload{Environment: "qa"}, plan.Destination{IP: netipMust("10.20.3.4"), Port: 5432},
			[]string{"decision     deny [cidr:10.20.0.0/16]", "* cidr 10.20.0.0/16", "longest matching prefix", "production cidr 10.20.0.0/16"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, err := Explain(s.Engine, tc.w, tc.dest)
			require.NoError(t, err)
			var buf bytes.Buffer
			require.NoError(t, x.WriteText(&buf))
			for _, w := range tc.want {
				assert.Contains(t, buf.String(), w)
			}
			won := 0
			for _, c := range x.Candidates {
				if c.Won {
					won++
					assert.Equal(t, x.Decision.Rule, c.Rule)
				}
			}
			assert.LessOrEqual(t, won, 1, strings.Join(tc.want, ";"))
		})
	}
}

// Explain words a TLS redirect exactly as policy eval and the DNS EDE text
// do (plan.NoteTLSRedirect), fail-closed clause included.
func TestExplainTLSRedirectNote(t *testing.T) {
	s := loadSide(t, "testdata/diff/new-sandbox/head")
	x, err := Explain(s.Engine, &inventory.Workload{Environment: "staging"}, plan.Destination{Host: "api.acmepay.com", Port: 443})
	require.NoError(t, err)
	assert.Equal(t, "redirect", x.Decision.Action)
	assert.Equal(t, []string{
		"sidecar: terminates TLS with a staging-CA leaf and re-originates it to the sandbox (pods that trust the staging CA; without a staging CA it is denied)",
		"dns: answered with a CNAME to api.sandbox.acmepay.com; " + plan.FailClosedTLS,
	}, x.Notes)
}
