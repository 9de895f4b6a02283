package xds

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

func TestBootstrap(t *testing.T) {
	out, err := Bootstrap("staging-checkout-1", "egressguard.egressguard.svc:18000", BootstrapOptions{OutboundPort: 15001, CAFile: "/etc/egressguard/ca.pem"})
	require.NoError(t, err)
	path := filepath.Join("testdata", "bootstrap.golden.yaml")
	if *update {
		require.NoError(t, os.WriteFile(path, out, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, string(want), string(out))
	// Round trip: the YAML decodes strictly into a valid Bootstrap.
	j, err := yaml.YAMLToJSON(out)
	require.NoError(t, err)
	var b bootstrapv3.Bootstrap
	require.NoError(t, protojson.Unmarshal(j, &b))
	require.NoError(t, ValidateDeep(&b, "bootstrap"))
	assert.Equal(t, "staging-checkout-1", b.Node.Id)
}

// An inline CA lands in the xDS cluster's TLS context with the control
// plane's name as the SAN to match (an IP address as IP_ADDRESS).
func TestBootstrapInlineCA(t *testing.T) {
	for addr, sanType := range map[string]string{"egressguard.egressguard.svc:18000": "DNS", "10.0.0.7:18000": "IP_ADDRESS"} {
		out, err := Bootstrap("n", addr, BootstrapOptions{CAPEM: []byte("-----BEGIN CERTIFICATE-----\n")})
		require.NoError(t, err)
		j, err := yaml.YAMLToJSON(out)
		require.NoError(t, err)
		var b bootstrapv3.Bootstrap
		require.NoError(t, protojson.Unmarshal(j, &b))
		var tc tlsv3.UpstreamTlsContext
		require.NoError(t, b.StaticResources.Clusters[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(&tc))
		vc := tc.GetCommonTlsContext().GetValidationContext()
		assert.Equal(t, "-----BEGIN CERTIFICATE-----\n", string(vc.GetTrustedCa().GetInlineBytes()))
		require.Len(t, vc.GetMatchTypedSubjectAltNames(), 1)
		host, _, _ := strings.Cut(addr, ":")
		assert.Equal(t, host, vc.GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact())
		assert.Equal(t, host, tc.GetSni())
		assert.Equal(t, sanType, vc.GetMatchTypedSubjectAltNames()[0].GetSanType().String())
	}
}

func TestBootstrapErrors(t *testing.T) {
	for _, tc := range []struct {
		name, node, addr string
		o                BootstrapOptions
		want             string
	}{
		{"no node", "", "cp:18000", BootstrapOptions{}, "node id"},
		{"no port", "n", "cp", BootstrapOptions{}, "not host:port"},
		{"bad port", "n", "cp:0", BootstrapOptions{}, "not host:port"},
		{"cert without key", "n", "cp:1", BootstrapOptions{CertFile: "c"}, "go together"},
		{"CA file and inline CA", "n", "cp:1", BootstrapOptions{CAFile: "c", CAPEM: []byte("x")}, "exclusive"},
		{"readiness without admin", "n", "cp:1", BootstrapOptions{ReadinessPort: 15021}, "readiness port"},
		{"readiness on the admin port", "n", "cp:1", BootstrapOptions{AdminPort: 15000, ReadinessPort: 15000}, "readiness port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Bootstrap(tc.node, tc.addr, tc.o)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, Defaults().Validate())
	c := Defaults()
	c.Listen, c.MaxStreams, c.TLS.CertFile = "nope", 0, "x"
	err := c.Validate()
	require.Error(t, err)
	for _, want := range []string{"xds.listen", "xds.max_streams", "xds.tls"} {
		assert.Contains(t, err.Error(), want)
	}
}
