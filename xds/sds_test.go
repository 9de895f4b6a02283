package xds

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
	"github.com/egressguard/egressguard/xds/stagingca"
)

// rotatingCerts is a staging CA for the SDS tests whose leaves carry a
// generation; rotate moves to the next one and ticks Changes.
type rotatingCerts struct {
	mu      sync.Mutex
	gen     int
	changes chan struct{}
}

func newRotatingCerts() *rotatingCerts { return &rotatingCerts{changes: make(chan struct{}, 1)} }

func (c *rotatingCerts) Leaf(host string) (stagingca.Leaf, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return stagingca.Leaf{CertPEM: fmt.Appendf(nil, "leaf %s gen %d", host, c.gen), KeyPEM: fmt.Appendf(nil, "key %s gen %d", host, c.gen)}, nil
}

func (c *rotatingCerts) Changes() <-chan struct{} { return c.changes }

func (c *rotatingCerts) rotate() {
	c.mu.Lock()
	c.gen++
	c.mu.Unlock()
	c.changes <- struct{}{}
}

var stripeSpec = plan.Spec{Default: plan.ActionAllow, Rules: []plan.Rule{
	{ID: "stripe-api", Hosts: []string{"api.stripe.com"}, Action: plan.ActionAllow, Requests: &plan.RequestPolicy{
		Rules: []plan.RequestRule{{ID: "stripe-api/test-key", Action: plan.ActionAllow,
			Headers: []plan.HeaderMatch{{Name: "authorization", Value: &plan.StringMatch{Prefix: "Bearer sk_test_"}}}}},
		Default: plan.RequestRule{ID: "stripe-api/default", Action: plan.ActionDeny, Reason: "no test key"},
	}},
}}

// startSDS serves two classes over ADS: node-a's intercepts api.stripe.com,
// node-b's (smallSpec) intercepts nothing.
func startSDS(t *testing.T, certs Certificates) (*Enforcer, string) {
	t.Helper()
	log := zaptest.NewLogger(t)
	intercepting, plain := mustCompile(t, stripeSpec), mustCompile(t, smallSpec)
	snap, err := inventory.NewSnapshot("staging", []inventory.Workload{
		{Name: "payments", Namespace: "ns", Environment: "staging", NodeIDs: []string{"node-a"}},
		{Name: "web", Namespace: "ns", Environment: "staging", NodeIDs: []string{"node-b"}},
	})
	require.NoError(t, err)
	plans := planFunc(func(w *inventory.Workload) (*plan.Plan, error) {
		if w.Name == "payments" {
			return intercepting, nil
		}
		return plain, nil
	})
	enf, err := NewEnforcer(plans, inventory.NewStatic(snap), Defaults(), log, NewMetrics(nil), WithCertificates(certs))
	require.NoError(t, err)
	_, addr := serveADS(t, Defaults(), enf)
	return enf, addr
}

func secretOf(t *testing.T, resp *discoveryv3.DiscoveryResponse) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, a := range resp.Resources {
		s := &tlsv3.Secret{}
		require.NoError(t, a.UnmarshalTo(s))
		out[s.Name] = string(s.GetTlsCertificate().GetCertificateChain().GetInlineBytes())
	}
	return out
}

// TestSDSOverADS: a raw ADS client (real gRPC over TCP) fetches its
// listener and the secret it names, ACKs both, is sent the rotated secret
// when the CA's leaves change, and ACKs it. A name outside the node's
// class is never sent, and a node whose class intercepts nothing gets no
// secret at all.
func TestSDSOverADS(t *testing.T) {
	certs := newRotatingCerts()
	enf, addr := startSDS(t, certs)
	stripe, twilio := InterceptSecretName("api.stripe.com"), InterceptSecretName("api.twilio.com")

	st := adsStream(t, dial(t, addr))
	node := sidecarNode("node-a")
	require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType}))
	lds, err := st.Recv()
	require.NoError(t, err)
	require.Equal(t, resourcev3.ListenerType, lds.TypeUrl)
	require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType, VersionInfo: lds.VersionInfo, ResponseNonce: lds.Nonce}))

	// Envoy asks for the secrets its listener names, on the same stream.
	require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.SecretType, ResourceNames: []string{stripe, twilio}}))
	sds, err := st.Recv()
	require.NoError(t, err)
	require.Equal(t, resourcev3.SecretType, sds.TypeUrl)
	assert.Equal(t, map[string]string{stripe: "leaf api.stripe.com gen 0"}, secretOf(t, sds), "only the class's own secret")
	require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.SecretType, ResourceNames: []string{stripe, twilio},
		VersionInfo: sds.VersionInfo, ResponseNonce: sds.Nonce}))
	require.Eventually(t, func() bool {
		v := enf.Nodes()
		return len(v) > 0 && v[0].Protocol.LastACKs["secret"] != nil
	}, 30*time.Second, 5*time.Millisecond, "the secret's ACK is recorded")

	before := enf.NodeSnapshot("node-a")
	certs.rotate()
	sds2, err := st.Recv()
	require.NoError(t, err)
	require.Equal(t, resourcev3.SecretType, sds2.TypeUrl, "the rotation is pushed as a secret; the listener is unchanged")
	assert.Equal(t, map[string]string{stripe: "leaf api.stripe.com gen 1"}, secretOf(t, sds2))
	assert.NotEqual(t, sds.VersionInfo, sds2.VersionInfo)
	after := enf.NodeSnapshot("node-a")
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.ClusterType} {
		assert.Equal(t, before.ResponseVersion(typ, nil), after.ResponseVersion(typ, nil), "a rotation changes the secrets only")
	}
	assert.Same(t, before.sets[typeListener][OutboundListenerName], after.sets[typeListener][OutboundListenerName], "the listener is shared, not rebuilt")
	require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.SecretType, ResourceNames: []string{stripe, twilio},
		VersionInfo: sds2.VersionInfo, ResponseNonce: sds2.Nonce}))

	// node-b's class intercepts nothing: asking for stripe's secret gets
	// no answer (the next response on the stream is for the listener).
	other := adsStream(t, dial(t, addr))
	nodeB := sidecarNode("node-b")
	require.NoError(t, other.Send(&discoveryv3.DiscoveryRequest{Node: nodeB, TypeUrl: resourcev3.SecretType, ResourceNames: []string{stripe}}))
	require.NoError(t, other.Send(&discoveryv3.DiscoveryRequest{Node: nodeB, TypeUrl: resourcev3.ListenerType}))
	resp, err := other.Recv()
	require.NoError(t, err)
	assert.Equal(t, resourcev3.ListenerType, resp.TypeUrl)
	assert.Empty(t, enf.NodeSnapshot("node-b").Names(resourcev3.SecretType))
	assert.Equal(t, []string{stripe}, enf.NodeSnapshot("node-a").Names(resourcev3.SecretType))
	for _, n := range enf.Nodes() {
		assert.NotContains(t, fmt.Sprint(n), "gen 1", "no key material in the node view")
	}
}

// TestSDSWithStagingCA: the same path with the real staging CA: the leaf a
// sidecar fetches over SDS is a key pair whose certificate verifies, for
// the live host, against the anchors pods are given; when the CA's host set
// changes (a new anchor), the re-pushed leaf verifies against the new
// anchors.
func TestSDSWithStagingCA(t *testing.T) {
	ca, err := stagingca.New(stagingca.Config{}, zaptest.NewLogger(t))
	require.NoError(t, err)
	require.NoError(t, ca.SetPermitted([]string{"api.stripe.com"}))
	enf, addr := startSDS(t, ca)
	stripe := InterceptSecretName("api.stripe.com")
	st := adsStream(t, dial(t, addr))
	node := sidecarNode("node-a")
	fetch := func(ack *discoveryv3.DiscoveryResponse) *tlsv3.Secret {
		t.Helper()
		req := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.SecretType, ResourceNames: []string{stripe}}
		if ack != nil {
			req.VersionInfo, req.ResponseNonce = ack.VersionInfo, ack.Nonce
		}
		require.NoError(t, st.Send(req))
		resp, err := st.Recv()
		require.NoError(t, err)
		require.Equal(t, resourcev3.SecretType, resp.TypeUrl)
		require.Len(t, resp.Resources, 1)
		s := &tlsv3.Secret{}
		require.NoError(t, resp.Resources[0].UnmarshalTo(s))
		require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.SecretType, ResourceNames: []string{stripe},
			VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}))
		return s
	}
	verify := func(s *tlsv3.Secret) *x509.Certificate {
		t.Helper()
		pair, err := tls.X509KeyPair(s.GetTlsCertificate().GetCertificateChain().GetInlineBytes(), s.GetTlsCertificate().GetPrivateKey().GetInlineBytes())
		require.NoError(t, err, "certificate and key belong together")
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		require.NoError(t, err)
		roots := x509.NewCertPool()
		require.True(t, roots.AppendCertsFromPEM(ca.AnchorsPEM()))
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "api.stripe.com"})
		require.NoError(t, err)
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "api.paypal.com"})
		require.Error(t, err, "not for another name")
		return leaf
	}
	first := verify(fetch(nil))

	// Leaves of hosts that stay permitted are kept (same key, same
	// issuer): a host set without api.stripe.com drops its leaf (the chain
	// denies, no secret), the host coming back gets a new one, pushed.
	require.NoError(t, ca.SetPermitted([]string{"*.twilio.com"}))
	require.Eventually(t, func() bool {
		snap := enf.NodeSnapshot("node-a")
		return snap != nil && len(snap.Names(resourcev3.SecretType)) == 0
	}, 30*time.Second, 5*time.Millisecond, "the refused host's secret is withdrawn")
	require.NoError(t, ca.SetPermitted([]string{"api.stripe.com", "*.twilio.com"}))
	var second *x509.Certificate
	for second == nil {
		resp, err := st.Recv()
		require.NoError(t, err)
		require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resp.TypeUrl, ResourceNames: []string{stripe},
			VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}))
		if resp.TypeUrl == resourcev3.SecretType && len(resp.Resources) == 1 {
			s := &tlsv3.Secret{}
			require.NoError(t, resp.Resources[0].UnmarshalTo(s))
			second = verify(s)
		}
	}
	assert.NotEqual(t, first.SerialNumber, second.SerialNumber, "a new leaf")
}
