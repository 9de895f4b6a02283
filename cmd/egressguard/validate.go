package main

import (
	"errors"
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
			// Report every problem at once: a bad section does not hide a
			// bad catalog. Enforcers are only built from valid sections.
			cfgErr := cfg.validate()
			buildCfg := cfg
			if cfgErr != nil {
				buildCfg.DNS.Listen, buildCfg.XDS.Listen, buildCfg.Webhook.Listen = "", "", ""
			}
			// validate never contacts a cluster: the Kubernetes source is
			// checked as configuration only.
			kubernetes := buildCfg.Inventory.source() == inventoryKubernetes
			if kubernetes {
				buildCfg.Inventory = inventorySection{}
			}
			g, err := build(cmd.Context(), ro.Logger(), buildCfg)
			if err := errors.Join(cfgErr, err); err != nil {
				return err
			}
			g.close()
			inv := fmt.Sprintf("%d workloads", g.inv.Current().Len())
			if kubernetes {
				inv = "inventory kubernetes (not contacted)"
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "ok: policy %s, %s, dns %s, xds %s, webhook %s, admin %s\n",
				g.engine.Version(), inv,
				orOff(cfg.DNS.Listen), orOff(cfg.XDS.Listen), orOff(cfg.Webhook.Listen), orOff(cfg.Admin.Listen))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "configuration `FILE`")
	f.StringArrayVar(&o.sets, "set", nil, "set any config key, `SECTION.KEY=VALUE` (repeatable)")
	return cmd
}

func orOff(s string) string {
	if s == "" {
		return "off"
	}
	return s
}
