package plan

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWithUnnamedTLS(t *testing.T) {
	p, err := Compile(Spec{Default: ActionAllow, Rules: []Rule{{ID: "r", Hosts: []string{"a.example"}, Action: ActionDeny}}})
	require.NoError(t, err)
	assert.Same(t, p.DefaultRule(), p.UnnamedTLS(), "without the setting, the default decides")

	q, err := p.WithUnnamedTLS(ActionDeny)
	require.NoError(t, err)
	assert.Equal(t, UnnamedTLSRuleID, q.UnnamedTLS().ID)
	assert.Equal(t, ActionDeny, q.UnnamedTLS().Action)
	assert.NotEqual(t, p.Fingerprint(), q.Fingerprint(), "the setting is part of the plan's identity")
	assert.Same(t, p.DefaultRule(), p.UnnamedTLS(), "p is unchanged")
	assert.Equal(t, p.Decide(Destination{Host: "b.example", Port: 443}), q.Decide(Destination{Host: "b.example", Port: 443}))

	allow, err := p.WithUnnamedTLS(ActionAllow)
	require.NoError(t, err)
	assert.NotEqual(t, q.Fingerprint(), allow.Fingerprint())
	_, err = p.WithUnnamedTLS(ActionRedirect)
	require.ErrorContains(t, err, "unnamed_tls")
}
