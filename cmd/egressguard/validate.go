package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newValidateCmd(ro *rootOptions) *cobra.Command {
	o := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "validate [--config FILE]",
		Short: "Check configuration, catalog, Rego and inventory exactly as serve would",
		Long: `validate builds every component serve would build (policy engine with the
catalogs and Rego, inventory, DNS and xDS settings, decision log) without
binding any socket, and reports all problems at once. Exit code 1 on error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.resolve(cmd, ro)
			if err != nil {
				return err
			}
			g, err := build(cmd.Context(), ro.Logger(), cfg)
			if err != nil {
				return err
			}
			for _, c := range g.closers {
				_ = c.Close()
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "ok: policy %s, %d workloads, dns %s, xds %s, admin %s\n",
				g.engine.Version(), g.invs.Current().Len(),
				orOff(cfg.DNS.Listen), orOff(cfg.XDS.Listen), orOff(cfg.Admin.Listen))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "configuration `FILE`")
	return cmd
}

func orOff(s string) string {
	if s == "" {
		return "off"
	}
	return s
}
