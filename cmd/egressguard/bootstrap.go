package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/egressguard/egressguard/xds"
)

// sidecarOnlyFlags are bootstrap flags that mean nothing to a proxyless
// gRPC client.
var sidecarOnlyFlags = []string{"cluster", "outbound-port", "admin-port", "server-name"}

func newBootstrapCmd(_ *rootOptions) *cobra.Command {
	var nodeID, address, tokenFile string
	var proxyless bool
	var o xds.BootstrapOptions
	cmd := &cobra.Command{
		Use:   "bootstrap --node-id ID --xds-address HOST:PORT [--proxyless]",
		Short: "Print the Envoy bootstrap a sidecar needs (validated), or with --proxyless a gRPC client's xDS bootstrap",
		Long: `Print the Envoy bootstrap (YAML) a sidecar needs, validated.

With --proxyless, print the bootstrap JSON of a proxyless gRPC client (grpc-go
reads it from the file GRPC_XDS_BOOTSTRAP names, or from GRPC_XDS_BOOTSTRAP_CONFIG):
egressguard's server, insecure channel credentials or TLS with --ca-file (mTLS
with --cert-file/--key-file), server features xds_v3 and trusted_xds_server (so a
redirect can set the sandbox's :authority; the client also needs
GRPC_EXPERIMENTAL_XDS_AUTHORITY_REWRITE=true), and the node ID. --token-file adds
jwt_token_file call credentials (gRFC A97; needs TLS, and
GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS=true in the client).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var b []byte
			var err error
			if proxyless {
				for _, f := range sidecarOnlyFlags {
					if cmd.Flags().Changed(f) {
						return fmt.Errorf("--%s is for sidecars; a proxyless bootstrap does not use it", f)
					}
				}
				b, err = xds.GRPCBootstrap(nodeID, address, xds.GRPCBootstrapOptions{
					CAFile: o.CAFile, CertFile: o.CertFile, KeyFile: o.KeyFile, TokenFile: tokenFile})
			} else {
				if tokenFile != "" {
					return fmt.Errorf("--token-file is for proxyless gRPC clients (--proxyless)")
				}
				b, err = xds.Bootstrap(nodeID, address, o)
			}
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&nodeID, "node-id", "", "the node ID (as the inventory knows it)")
	f.StringVar(&address, "xds-address", "127.0.0.1:18000", "address of the egressguard xDS server")
	f.BoolVar(&proxyless, "proxyless", false, "print a proxyless gRPC client's bootstrap JSON instead of Envoy's")
	f.StringVar(&tokenFile, "token-file", "", "proxyless: send the token in this file on the xDS stream (jwt_token_file call credentials)")
	f.StringVar(&o.Cluster, "cluster", "", "Envoy service cluster (default egressguard)")
	f.Uint32Var(&o.OutboundPort, "outbound-port", 0, "sidecar outbound port written into node metadata")
	f.Uint32Var(&o.AdminPort, "admin-port", 0, "enable Envoy's admin on 127.0.0.1:PORT")
	f.StringVar(&o.CAFile, "ca-file", "", "CA to verify the control plane (enables TLS)")
	f.StringVar(&o.CertFile, "cert-file", "", "client certificate for mTLS")
	f.StringVar(&o.KeyFile, "key-file", "", "client key for mTLS")
	f.StringVar(&o.ServerName, "server-name", "", "verified name of the control plane")
	_ = cmd.MarkFlagRequired("node-id")
	return cmd
}
