package deploy

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/egressguard/egressguard/inject"
	"github.com/egressguard/egressguard/xds"
)

// mountedSecret returns the Secret volume the control plane mounts at dir
// (the directory of a file its config names).
func mountedSecret(t *testing.T, r roles, dir string) *corev1.SecretVolumeSource {
	t.Helper()
	c := r.cp.Spec.Template.Spec.Containers[0]
	j := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == dir })
	require.GreaterOrEqual(t, j, 0, "the control plane mounts %s", dir)
	k := slices.IndexFunc(r.cp.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[j].Name })
	require.GreaterOrEqual(t, k, 0)
	sec := r.cp.Spec.Template.Spec.Volumes[k].Secret
	require.NotNil(t, sec, "%s is a Secret volume", dir)
	return sec
}

// checkXDSTLS: with xds.tls the control plane serves xDS with a mounted
// certificate, and the bootstrap the webhook injects (CA inline, SAN and
// SNI) verifies exactly that certificate for the name it expects, which is
// the host sidecars and proxyless clients dial. A Helm-generated Secret is
// checked with crypto/x509; a cert-manager one by its Certificate's names.
func checkXDSTLS(t *testing.T, r roles) {
	t.Helper()
	x, w := r.cpConfig.XDS.TLS, r.cpConfig.Webhook
	if !x.Enabled() {
		if w != nil {
			assert.Empty(t, w.XDSCAFile, "no xDS TLS, no CA for the bootstrap")
		}
		return
	}
	require.Equal(t, path.Dir(x.CertFile), path.Dir(x.KeyFile))
	sec := mountedSecret(t, r, path.Dir(x.CertFile))
	if w == nil {
		return
	}
	require.Equal(t, path.Dir(x.CertFile), path.Dir(w.XDSCAFile), "webhook.xds_ca_file is the serving Secret's CA")
	host, _, err := net.SplitHostPort(w.XDSAddress)
	require.NoError(t, err)

	var cert *cmCertificate
	for _, c := range find[*cmCertificate](r.objs) {
		if c.Spec.SecretName == sec.SecretName {
			cert = c
		}
	}
	if cert != nil {
		assert.Contains(t, cert.Spec.DNSNames, host, "cert-manager issues the xDS certificate for the name sidecars dial")
		checkIssuerChain(t, r.objs, cert)
		return
	}
	s := one[*corev1.Secret](t, r.objs, sec.SecretName)
	pair, err := tls.X509KeyPair(s.Data[path.Base(x.CertFile)], s.Data[path.Base(x.KeyFile)])
	require.NoError(t, err, "the xDS certificate and key are a pair")
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	require.NoError(t, err)

	// The bootstrap the webhook renders from the CA file as mounted.
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(caFile, s.Data[path.Base(w.XDSCAFile)], 0o600))
	cfg := *w
	cfg.XDSCAFile = caFile
	_, err = inject.NewInjector(withInjectable(cfg))
	require.NoError(t, err, "the webhook accepts the mounted CA")
	y, err := inject.SidecarBootstrap(cfg, s.Data[path.Base(w.XDSCAFile)])
	require.NoError(t, err)
	b, err := inject.ParseBootstrap([]byte(strings.ReplaceAll(y, "$$", "$")))
	require.NoError(t, err)
	i := slices.IndexFunc(b.StaticResources.Clusters, func(c *clusterv3.Cluster) bool { return c.GetName() == xds.XDSClusterName })
	require.GreaterOrEqual(t, i, 0)
	var utc tlsv3.UpstreamTlsContext
	require.NoError(t, b.StaticResources.Clusters[i].GetTransportSocket().GetTypedConfig().UnmarshalTo(&utc), "the xds cluster uses TLS")
	vc := utc.GetCommonTlsContext().GetValidationContext()
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(vc.GetTrustedCa().GetInlineBytes()), "the bootstrap carries the CA inline")
	require.Len(t, vc.GetMatchTypedSubjectAltNames(), 1)
	san := vc.GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact()
	assert.Equal(t, host, san, "the SAN Envoy requires is the host it dials")
	assert.Equal(t, host, utc.GetSni())
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: san, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	require.NoError(t, err, "the bootstrap's CA verifies the xDS certificate for %s", san)

	// A proxyless client dials the same name, over TLS with its token.
	pb, err := inject.ProxylessBootstrap(cfg)
	require.NoError(t, err)
	var gb struct {
		XDSServers []struct {
			ServerURI    string `json:"server_uri"`
			ChannelCreds []struct {
				Type string `json:"type"`
			} `json:"channel_creds"`
			CallCreds []struct {
				Type string `json:"type"`
			} `json:"call_creds"`
		} `json:"xds_servers"`
	}
	require.NoError(t, json.Unmarshal([]byte(strings.ReplaceAll(pb, "$$", "$")), &gb))
	require.Len(t, gb.XDSServers, 1)
	uriHost, _, err := net.SplitHostPort(gb.XDSServers[0].ServerURI)
	require.NoError(t, err)
	assert.Equal(t, host, uriHost, "grpc-go verifies the server URI's host")
	assert.Equal(t, "tls", gb.XDSServers[0].ChannelCreds[0].Type)
	assert.Equal(t, "jwt_token_file", gb.XDSServers[0].CallCreds[0].Type)
	assert.Equal(t, r.cpConfig.XDS.Identity.Audience, w.TokenAudience, "the token is issued for the audience TokenReview checks")
}

// withInjectable fills what NewInjector needs beyond the rendered config
// (the control plane sets dns_server at start).
func withInjectable(c inject.Config) inject.Config {
	if c.DNSServer == "" || strings.HasPrefix(c.DNSServer, "$(") {
		c.DNSServer = "10.0.0.10"
	}
	return c
}

// checkStagingCA: the key file intercept.ca.key_file names is a mounted
// Secret's tls.key, and a generated one is an RSA key the staging CA accepts.
func checkStagingCA(t *testing.T, r roles) {
	t.Helper()
	kf := r.cpConfig.Intercept.CA.KeyFile
	if kf == "" {
		return
	}
	sec := mountedSecret(t, r, path.Dir(kf))
	if len(sec.Items) > 0 {
		require.Len(t, sec.Items, 1)
		assert.Equal(t, path.Base(kf), sec.Items[0].Path)
	}
	var s *corev1.Secret
	for _, x := range find[*corev1.Secret](r.objs) {
		if x.Name == sec.SecretName {
			s = x
		}
	}
	if s == nil {
		return // the operator's Secret (stagingCA.existingSecret)
	}
	blk, _ := pem.Decode(s.Data["tls.key"])
	require.NotNil(t, blk, "tls.key is PEM")
	k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	require.NoError(t, err, "an RSA key (deterministic PKCS#1 v1.5 anchors)")
	assert.GreaterOrEqual(t, k.N.BitLen(), 2048)
}
