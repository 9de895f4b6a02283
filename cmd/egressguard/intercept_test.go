package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/egressguard/egressguard/inject"
	"github.com/egressguard/egressguard/xds"
	"github.com/egressguard/egressguard/xds/stagingca"
)

const testCAKey = "../../xds/stagingca/testdata/ca1.key"

func TestInterceptConfig(t *testing.T) {
	cfg, err := loadServeConfig("")
	require.NoError(t, err)
	assert.True(t, cfg.Intercept.Enabled, "on by default")
	assert.Empty(t, cfg.Intercept.CA.KeyFile, "ephemeral by default (make run)")

	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte("intercept:\n  ca:\n    leaf_ttl: 1m\n    cert_file: ca.crt\n"), 0o600))
	cfg, err = loadServeConfig(path)
	require.NoError(t, err)
	err = cfg.validate()
	require.ErrorContains(t, err, "intercept.ca.leaf_ttl: 1m0s is shorter than 10m0s")

	// Checked even when off, as every section.
	cfg, err = loadServeConfig("", "intercept.enabled=false", "intercept.ca.cert_file=ca.crt")
	require.NoError(t, err)
	require.ErrorContains(t, cfg.validate(), "intercept.ca.cert_file: set without key_file")

	require.NoError(t, os.WriteFile(path, []byte("intercept:\n  ca:\n    keyfile: x\n"), 0o600))
	_, err = loadServeConfig(path)
	require.ErrorContains(t, err, "intercept.ca")
	require.ErrorContains(t, err, "key_file")
}

// buildWithCA builds the test guard (xds on) with the staging CA on
// testCAKey; its files are closed, the CA stays usable.
func buildWithCA(t *testing.T) *guard {
	t.Helper()
	cfg := testServeConfig(t)
	cfg.Intercept.CA.KeyFile = testCAKey
	g, err := build(context.Background(), zaptest.NewLogger(t), cfg)
	require.NoError(t, err)
	g.close()
	return g
}

func TestBuildStagingCA(t *testing.T) {
	g := buildWithCA(t)
	require.NotNil(t, g.ca)
	// The anchors are exactly those any other replica derives from the
	// same key and policy.
	want, err := stagingca.New(stagingca.Config{KeyFile: testCAKey}, zap.NewNop())
	require.NoError(t, err)
	require.NoError(t, want.SetPermitted(g.engine.InterceptHosts()))
	require.Equal(t, want.AnchorsPEM(), g.ca.AnchorsPEM())
	hosts := len(g.engine.InterceptHosts())
	require.NoError(t, testutil.GatherAndCompare(g.reg, strings.NewReader(fmt.Sprintf(`
# HELP egressguard_stagingca_permitted_hosts Host patterns the CA may vouch for.
# TYPE egressguard_stagingca_permitted_hosts gauge
egressguard_stagingca_permitted_hosts %d
`, hosts)), "egressguard_stagingca_permitted_hosts"))

	// A node-local DNS instance never holds the key.
	dnsOnly := testServeConfig(t)
	dnsOnly.XDS.Listen = ""
	dnsOnly.Intercept.CA.KeyFile = testCAKey
	g2, err := build(context.Background(), zaptest.NewLogger(t), dnsOnly)
	require.NoError(t, err)
	g2.close()
	require.Nil(t, g2.ca)

	off := testServeConfig(t)
	off.Intercept.Enabled = false
	g3, err := build(context.Background(), zaptest.NewLogger(t), off)
	require.NoError(t, err)
	g3.close()
	require.Nil(t, g3.ca)

	bad := testServeConfig(t)
	bad.Intercept.CA.KeyFile = filepath.Join(t.TempDir(), "missing.key")
	_, err = build(context.Background(), zaptest.NewLogger(t), bad)
	require.ErrorContains(t, err, "intercept.ca: stagingca: key_file")
}

func TestCAAnchorsCLI(t *testing.T) {
	out, err := runCLI(t, "ca", "anchors", "--set", "intercept.ca.key_file="+testCAKey)
	require.NoError(t, err)
	blk, _ := pem.Decode([]byte(out[strings.Index(out, "-----BEGIN"):]))
	require.NotNil(t, blk)
	assert.Contains(t, out, "intercepted host patterns")

	g := buildWithCA(t)
	assert.Contains(t, out, string(g.ca.AnchorsPEM()), "what a serving replica hands the webhook")

	// The anchors follow the policy: an operator catalog that switches
	// Stripe off takes its hosts out of the name constraints.
	cat := filepath.Join(t.TempDir(), "catalog.yaml")
	require.NoError(t, os.WriteFile(cat, []byte("providers:\n  - name: stripe\n    disabled: true\n    endpoints:\n      - live: api.stripe.com\n"), 0o600))
	without, err := runCLI(t, "ca", "anchors", "--catalog", cat, "--set", "intercept.ca.key_file="+testCAKey)
	require.NoError(t, err)
	permitted := func(out string) []string {
		blk, _ := pem.Decode([]byte(out[strings.Index(out, "-----BEGIN"):]))
		c, err := x509.ParseCertificate(blk.Bytes)
		require.NoError(t, err)
		return c.PermittedDNSDomains
	}
	assert.Contains(t, permitted(out), "api.stripe.com")
	assert.NotContains(t, permitted(without), "api.stripe.com")
	assert.Contains(t, permitted(without), "api-m.paypal.com")

	_, err = runCLI(t, "ca", "anchors")
	require.ErrorContains(t, err, "ephemeral")
}

// TestInjectTrustsStagingCA: the webhook options serve builds give injected
// pods the staging CA's anchors, the bytes every replica with the same key
// and policy derives.
func TestInjectTrustsStagingCA(t *testing.T) {
	g := buildWithCA(t)
	wcfg := inject.Defaults()
	wcfg.DNSServer, wcfg.InitImage = "10.96.0.53", "egressguard:test"
	inj, err := inject.NewInjector(wcfg, g.injectOptions()...)
	require.NoError(t, err)
	in, err := os.ReadFile("../../inject/testdata/in/deployment-pod.yaml")
	require.NoError(t, err)
	var review admissionv1.AdmissionReview
	require.NoError(t, yaml.Unmarshal(in, &review))
	var pod corev1.Pod
	require.NoError(t, json.Unmarshal(review.Request.Object.Raw, &pod))
	out, _, err := inj.Inject(&pod, review.Request.Namespace)
	require.NoError(t, err)
	var anchors string
	for _, c := range out.Spec.InitContainers {
		for _, e := range c.Env {
			if c.Name == inject.TrustContainerName && e.Name == inject.EnvTrustAnchors {
				anchors = e.Value
			}
		}
	}
	require.Equal(t, string(g.ca.AnchorsPEM()), anchors)

	g.ca = nil
	require.Empty(t, g.injectOptions(), "no CA, no trust bundle")
}

// TestPermitInterceptsFollowsPolicy: on every policy activation the CA is
// given the hosts the new policy intercepts, before the enforcers rebuild.
func TestPermitInterceptsFollowsPolicy(t *testing.T) {
	cat := filepath.Join(t.TempDir(), "catalog.yaml")
	write := func(live string) {
		require.NoError(t, os.WriteFile(cat, []byte(`providers:
  - name: acme-payments
    category: payment
    endpoints:
      - live: `+live+`
        sandbox: {host: sandbox.acme-psp.example, port: 443, tls: true}
`), 0o600))
	}
	write("pay.acme-psp.example")
	cfg := testServeConfig(t)
	cfg.Policy.Catalogs = []string{cat}
	cfg.Intercept.CA.KeyFile = testCAKey
	g, err := build(context.Background(), zaptest.NewLogger(t), cfg)
	require.NoError(t, err)
	defer g.close()
	hosts := g.engine.InterceptHosts()
	require.Contains(t, hosts, "pay.acme-psp.example", "a TLS sandbox redirect is intercepted")
	for _, h := range hosts {
		_, err := g.ca.Leaf(h)
		require.NoError(t, err, h)
	}

	write("pay2.acme-psp.example")
	require.NoError(t, g.engine.Reload(context.Background()))
	_, err = g.ca.Leaf("pay2.acme-psp.example")
	require.NoError(t, err)
	_, err = g.ca.Leaf("pay.acme-psp.example")
	require.ErrorContains(t, err, "not intercepted")
}

// TestServeInterceptSDS: a staging sidecar's ADS stream on a serving guard
// with the default catalog gets the leaf of api.stripe.com (request-level
// rules) over SDS, and it verifies for the live name against the bundle a
// pod is given (system roots + the anchors that any replica, or `egressguard
// ca anchors`, derives from the same key and policy); a node of a class that
// intercepts nothing gets no secret.
func TestServeInterceptSDS(t *testing.T) {
	const host = "api.stripe.com"
	cfg := testServeConfig(t)
	cfg.Intercept.CA.KeyFile = testCAKey
	cfg.Inventory.File = "../../inventory/testdata/valid/basic.yaml"
	addrs := startGuard(t, cfg)
	out, err := runCLI(t, "ca", "anchors", "--set", "intercept.ca.key_file="+testCAKey)
	require.NoError(t, err)
	roots, err := x509.SystemCertPool()
	require.NoError(t, err)
	require.True(t, roots.AppendCertsFromPEM([]byte(out[strings.Index(out, "-----BEGIN"):])))

	conn, err := grpc.NewClient(addrs.XDS.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	// secret asks for host's SDS secret as the sidecar nodeID.
	secret := func(nodeID string, wait time.Duration) ([]*anypb.Any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
		if err != nil {
			return nil, err
		}
		if err := ads.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: nodeID, UserAgentName: "envoy"}, TypeUrl: resourcev3.SecretType,
			ResourceNames: []string{xds.InterceptSecretName(host)}}); err != nil {
			return nil, err
		}
		resp, err := ads.Recv()
		if err != nil {
			return nil, err
		}
		return resp.Resources, nil
	}
	res, err := secret("sidecar~10.1.2.3~checkout-7d9.payments~payments.svc.cluster.local", 30*time.Second)
	require.NoError(t, err)
	require.Len(t, res, 1)
	s := &tlsv3.Secret{}
	require.NoError(t, res[0].UnmarshalTo(s))
	pair, err := tls.X509KeyPair(s.GetTlsCertificate().GetCertificateChain().GetInlineBytes(), s.GetTlsCertificate().GetPrivateKey().GetInlineBytes())
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	require.NoError(t, err)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host})
	require.NoError(t, err)

	// The production billing workload's class intercepts nothing: no
	// secret (an empty answer, or none while the snapshot lacks it).
	res, err = secret("sidecar~10.1.0.7~billing-55f.payments~payments.svc.cluster.local", 2*time.Second)
	if err != nil {
		require.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
	}
	require.Empty(t, res)
}
