package xds

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGRPCBootstrap(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    GRPCBootstrapOptions
	}{
		{"insecure", GRPCBootstrapOptions{}},
		{"mtls-token", GRPCBootstrapOptions{CAFile: "/etc/egressguard/ca.pem", CertFile: "/etc/egressguard/tls.crt",
			KeyFile: "/etc/egressguard/tls.key", TokenFile: "/var/run/secrets/egressguard/token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := GRPCBootstrap("sidecar~10.1.2.3~checkout-7d9.payments~payments.svc.cluster.local", "egressguard.egressguard.svc:18000", tc.o)
			require.NoError(t, err)
			path := filepath.Join("testdata", "grpc-bootstrap."+tc.name+".golden.json")
			if *update {
				require.NoError(t, os.WriteFile(path, out, 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(out))
			var b grpcBootstrap
			require.NoError(t, json.Unmarshal(out, &b))
			require.Len(t, b.XDSServers, 1)
			assert.Equal(t, []string{"xds_v3", "trusted_xds_server"}, b.XDSServers[0].ServerFeatures)
		})
	}
}

func TestGRPCBootstrapErrors(t *testing.T) {
	for _, tc := range []struct {
		name, node, addr string
		o                GRPCBootstrapOptions
		want             string
	}{
		{"no node", "", "cp:18000", GRPCBootstrapOptions{}, "node id"},
		{"no port", "n", "cp", GRPCBootstrapOptions{}, "not host:port"},
		{"cert without key", "n", "cp:1", GRPCBootstrapOptions{CAFile: "ca", CertFile: "c"}, "go together"},
		{"client cert without CA", "n", "cp:1", GRPCBootstrapOptions{CertFile: "c", KeyFile: "k"}, "needs the CA file"},
		{"token without TLS", "n", "cp:1", GRPCBootstrapOptions{TokenFile: "/t"}, "only over TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := GRPCBootstrap(tc.node, tc.addr, tc.o)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
