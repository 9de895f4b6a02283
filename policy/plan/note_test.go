package plan

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNoteTLSRedirect(t *testing.T) {
	p, err := Compile(Spec{Default: ActionAllow, Rules: []Rule{
		{ID: "tls", Hosts: []string{"api.live.com"}, Action: ActionRedirect, Redirect: &Redirect{Host: "api.sandbox.com", Port: 443, TLS: true}},
		{ID: "plain", Hosts: []string{"hooks.live.com"}, Action: ActionRedirect, Redirect: &Redirect{Host: "hooks.sandbox.com"}},
		{ID: "report", Hosts: []string{"report.live.com"}, Action: ActionRedirect, Mode: ModeReport, Redirect: &Redirect{Host: "r.sandbox.com", TLS: true}},
		{ID: "deny", Hosts: []string{"db.live.com"}, Action: ActionDeny},
	}})
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		dest Destination
		want bool
	}{
		{"TLS sandbox, DNS lookup", Destination{Host: "api.live.com", Protocol: "dns"}, true},
		{"plain sandbox on 443", Destination{Host: "hooks.live.com", Port: 443}, true},
		{"plain sandbox, tls protocol", Destination{Host: "hooks.live.com", Protocol: "tls"}, true},
		{"plain sandbox, plain HTTP", Destination{Host: "hooks.live.com", Port: 80, Protocol: "http"}, false},
		{"plain sandbox, DNS lookup", Destination{Host: "hooks.live.com", Protocol: "dns"}, false},
		{"report mode does not redirect", Destination{Host: "report.live.com", Port: 443}, false},
		{"deny", Destination{Host: "db.live.com", Port: 443}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, ok := NoteTLSRedirect(p.Decide(tc.dest), tc.dest)
			require.Equal(t, tc.want, ok)
			if !ok {
				assert.Zero(t, n)
				return
			}
			lines := n.Lines()
			require.Len(t, lines, 2)
			assert.Equal(t, "sidecar: terminates TLS with a staging-CA leaf and re-originates it to the sandbox (pods that trust the staging CA; without a staging CA it is denied)", lines[0])
			assert.Contains(t, lines[1], "dns: answered with a CNAME to ")
			assert.Contains(t, lines[1], FailClosedTLS, "every surface keeps the fail-closed clause")
		})
	}
}
