package inject

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigDefaults(t *testing.T) {
	require.NoError(t, Defaults().Validate(), "the defaults with the webhook off are valid")
	require.NoError(t, testConfig().Validate())

	on := Defaults()
	on.Listen = "0.0.0.0:8443"
	err := on.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "webhook.dns_server: required when webhook.listen is set")
	assert.Contains(t, err.Error(), "webhook.init_image: required when webhook.listen is set")
}

func TestConfigValidateReportsEveryField(t *testing.T) {
	c := testConfig()
	c.Listen = "8443"
	c.KeyFile = ""
	c.SidecarImage = "envoy proxy"
	c.XDSAddress = "egressguard:0"
	c.DNSServer = "dnsguard.svc"
	c.OutboundPort = 15000
	c.ProxyUID = 0
	c.ExcludeCIDRs = []string{"10.0.0.1/8", "nope", "::/0", "fd00::/8"}
	c.ClusterDomain = "Cluster_Local"
	c.SidecarCPU = "lots"
	c.SidecarMemory = "-1Mi"
	err := c.Validate()
	require.Error(t, err)
	for _, want := range []string{
		`webhook.listen: "8443" is not host:port`,
		"webhook.key_file: required",
		"webhook.cert_file: cert_file and key_file go together",
		`webhook.sidecar_image: "envoy proxy" contains white space`,
		`webhook.xds_address: "egressguard:0": invalid port`,
		`webhook.dns_server: "dnsguard.svc" is not an IP address`,
		"webhook.outbound_port: 15000 is taken by the sidecar",
		"webhook.proxy_uid: 0 must be between 1 and 2147483647",
		`webhook.exclude_cidrs[0]: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8`,
		`webhook.exclude_cidrs[1]: "nope" is not an IP address or CIDR`,
		`webhook.exclude_cidrs[2]: ::/0 would exclude every IPv6 destination`,
		`webhook.cluster_domain: "Cluster_Local" is not a DNS name`,
		`webhook.sidecar_cpu: "lots" is not a Kubernetes quantity`,
		`webhook.sidecar_memory: "-1Mi" must be positive`,
	} {
		assert.Contains(t, err.Error(), want)
	}
	assert.NotContains(t, err.Error(), "exclude_cidrs[3]", "fd00::/8 is fine")
	assert.Len(t, strings.Split(err.Error(), "\n"), 14, "one line per problem:\n%v", err)
}

func TestNewInjectorNeedsDNSAndInitImageEvenWhenOff(t *testing.T) {
	c := Defaults()
	_, err := NewInjector(c)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "webhook.dns_server: required to inject pods")
	assert.Contains(t, err.Error(), "webhook.init_image: required to inject pods")
}
