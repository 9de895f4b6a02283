package main

import (
	"github.com/spf13/cobra"

	"github.com/egressguard/egressguard/xds"
)

func newBootstrapCmd(_ *rootOptions) *cobra.Command {
	var nodeID, address string
	var o xds.BootstrapOptions
	cmd := &cobra.Command{
		Use:   "bootstrap --node-id ID --xds-address HOST:PORT",
		Short: "Print the Envoy bootstrap a sidecar needs (validated)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := xds.Bootstrap(nodeID, address, o)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&nodeID, "node-id", "", "the sidecar's Envoy node ID (as the inventory knows it)")
	f.StringVar(&address, "xds-address", "127.0.0.1:18000", "address of the egressguard xDS server")
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
