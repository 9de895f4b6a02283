package kube

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseNodeID(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   string
		want PodRef
		ok   bool
	}{
		{"v4", "sidecar~10.1.2.3~api-7d9f.shop~shop.svc.cluster.local", PodRef{netip.MustParseAddr("10.1.2.3"), "api-7d9f", "shop"}, true},
		{"v6 and another domain", "sidecar~fd00::5~web.prod~prod.svc.corp.example", PodRef{netip.MustParseAddr("fd00::5"), "web", "prod"}, true},
		{"pod name with dots", "sidecar~10.0.0.1~a.b.c.ns~ns.svc.cluster.local", PodRef{netip.MustParseAddr("10.0.0.1"), "a.b.c", "ns"}, true},
		{"namespaces disagree", "sidecar~10.0.0.1~api.shop~prod.svc.cluster.local", PodRef{}, false},
		{"non-canonical IPv6", "sidecar~fd00:0::5~web.prod~prod.svc.cluster.local", PodRef{}, false},
		{"zone", "sidecar~fe80::1%eth0~web.prod~prod.svc.cluster.local", PodRef{}, false},
		{"not a sidecar", "router~10.0.0.1~web.prod~prod.svc.cluster.local", PodRef{}, false},
		{"no namespace", "sidecar~10.0.0.1~web~prod.svc.cluster.local", PodRef{}, false},
		{"empty domain", "sidecar~10.0.0.1~web.prod~prod.svc.", PodRef{}, false},
		{"proxyless free-form", "orders-client", PodRef{}, false},
		{"five fields", "sidecar~10.0.0.1~web.prod~prod.svc.cluster.local~x", PodRef{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseNodeID(tc.id)
			require.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

// FuzzParseNodeID: ParseNodeID never panics, and whatever it accepts is
// what NodeID writes for the pod it read (so an ID it parses is one the
// inventory could hold, with nothing ignored).
func FuzzParseNodeID(f *testing.F) {
	f.Add("sidecar~10.1.2.3~api-7d9f.shop~shop.svc.cluster.local")
	f.Add("sidecar~fd00::5~web.prod~prod.svc.corp.example")
	f.Add("sidecar~::ffff:10.0.0.1~a.b~b.svc.x")
	f.Add("orders-client")
	f.Fuzz(func(t *testing.T, id string) {
		ref, ok := ParseNodeID(id)
		if !ok {
			return
		}
		domain := strings.TrimPrefix(id[strings.LastIndexByte(id, '~')+1:], ref.Namespace+".svc.")
		require.Equal(t, id, NodeID(ref.IP, ref.Name, ref.Namespace, domain))
	})
}
