package policy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const optOutCatalog = `zones: ["*.prod.example.com"]
host_network_opt_outs:
  - id: node-exporter
    namespace: monitoring
    pods: "node-exporter-*"
    labels: {app: node-exporter}
    owner: team-observability
    ticket: OPS-1234
    expires: 2026-12-31
    reason: reads host network counters
  - id: cni
    namespace: kube-system
    owner: team-net
    ticket: NET-9
    expires: 2026-06-30
`

func TestAdmitHostNetwork(t *testing.T) {
	c, err := ParseCatalog("optouts.yaml", []byte(optOutCatalog))
	require.NoError(t, err)
	now := time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC)
	exporter := OptOutPod{Namespace: "monitoring", GenerateName: "node-exporter-", Labels: map[string]string{"app": "node-exporter", "x": "y"}}

	o, err := c.AdmitHostNetwork(" node-exporter ", exporter, now)
	require.NoError(t, err, "generateName matches the glob; the last day still applies")
	assert.Equal(t, "team-observability", o.Owner)

	named := exporter
	named.Name = "node-exporter-x7k2p"
	_, err = c.AdmitHostNetwork("node-exporter", named, now)
	require.NoError(t, err)

	for name, tc := range map[string]struct {
		id   string
		pod  func(p OptOutPod) OptOutPod
		now  time.Time
		want string
	}{
		"free text is not an id": {id: "OPS-1234: node exporter", want: `no host_network_opt_outs entry "OPS-1234: node exporter"`},
		"other namespace": {id: "node-exporter", pod: func(p OptOutPod) OptOutPod { p.Namespace = "staging"; return p },
			want: `for namespace "monitoring", not "staging"`},
		"id of another namespace's opt-out": {id: "cni", want: `for namespace "kube-system"`},
		"pod name outside the glob": {id: "node-exporter", pod: func(p OptOutPod) OptOutPod { p.Name = "miner-1"; return p },
			want: `covers pods "node-exporter-*", not "miner-1"`},
		"missing label": {id: "node-exporter", pod: func(p OptOutPod) OptOutPod { p.Labels = map[string]string{"x": "y"}; return p },
			want: "labelled app=node-exporter only"},
		"wrong label value": {id: "node-exporter", pod: func(p OptOutPod) OptOutPod { p.Labels = map[string]string{"app": "miner"}; return p },
			want: "labelled app=node-exporter only"},
		"expired": {id: "node-exporter", now: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
			want: `expired 2026-12-31 (owner team-observability, ticket OPS-1234)`},
	} {
		t.Run(name, func(t *testing.T) {
			p := exporter
			if tc.pod != nil {
				p = tc.pod(p)
			}
			at := now
			if !tc.now.IsZero() {
				at = tc.now
			}
			o, err := c.AdmitHostNetwork(tc.id, p, at)
			assert.Nil(t, o)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestHostNetworkOptOutsInvalid(t *testing.T) {
	_, err := ParseCatalog("bad.yaml", []byte(`host_network_opt_outs:
  - id: a
    namespace: Monitoring
    pods: "node-[exporter"
    labels: {"bad key!": v}
    expires: 2026-13-01
  - id: a
    namespace: ok
    owner: o
    ticket: t
  - namespace: ok
`))
	require.Error(t, err)
	for _, want := range []string{
		`bad.yaml:3: host_network_opt_outs[0].namespace: namespace "Monitoring"`,
		`bad.yaml:4: host_network_opt_outs[0].pods: bad pod name glob "node-[exporter"`,
		`host_network_opt_outs[0].labels."bad key!": label key "bad key!"`,
		`host_network_opt_outs[0].owner: owner is required`,
		`host_network_opt_outs[0].ticket: ticket is required`,
		`bad.yaml:6: host_network_opt_outs[0].expires: bad date "2026-13-01"`,
		`bad.yaml:7: host_network_opt_outs[1].id: duplicate opt-out id "a" (first at line 2)`,
		`host_network_opt_outs[1].expires: expires is required`,
		`bad.yaml:11: host_network_opt_outs[2].id: opt-out id is required`,
	} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestHostNetworkOptOutsMerge(t *testing.T) {
	now := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	c, _, err := BuildCatalog([]CatalogFile{{Name: "a.yaml", Data: []byte(optOutCatalog)}}, now)
	require.NoError(t, err)
	require.Len(t, c.HostNetworkOptOuts, 2, "an expired opt-out stays listed (the webhook refuses it by date)")

	_, _, err = BuildCatalog([]CatalogFile{{Name: "a.yaml", Data: []byte(optOutCatalog)}, {Name: "b.yaml", Data: []byte(optOutCatalog)}}, now)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `b.yaml: host_network_opt_outs: opt-out id "node-exporter" is already defined in a.yaml`)
}
