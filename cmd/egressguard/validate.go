package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/egressguard/egressguard/policy"
)

func newValidateCmd(ro *rootOptions) *cobra.Command {
	o := &serveFlags{}
	var previous []string
	cmd := &cobra.Command{
		Use:   "validate [--config FILE]",
		Short: "Check configuration, catalog, Rego and inventory exactly as serve would",
		Long: `validate builds every component serve would build (policy engine with the
catalogs and Rego, inventory, DNS and xDS settings, decision log) without
binding any socket, and reports all problems at once. Exit code 1 on error.

With --previous-catalog (the catalog files serving now), it also shows the
change a reload would make and fails when a running serve would refuse it
(more of the production entries removed than policy.max_shrink allows).`,
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
			// validate never contacts a cluster: the Kubernetes source and
			// admin.auth.kubernetes are checked as configuration only.
			kubernetes := buildCfg.Inventory.source() == inventoryKubernetes
			if kubernetes {
				buildCfg.Inventory = inventorySection{}
			}
			buildCfg.Admin.Auth.Kubernetes = false
			g, err := build(cmd.Context(), ro.Logger(), buildCfg)
			if err := errors.Join(cfgErr, err); err != nil {
				return err
			}
			g.close()
			inv := fmt.Sprintf("%d workloads", g.inv.Current().Len())
			if kubernetes {
				inv = "inventory kubernetes (not contacted)"
			}
			if _, err := fmt.Fprintf(cmd.OutOrStdout(), "ok: policy %s, %s, dns %s, xds %s, webhook %s, admin %s\n",
				g.engine.Version(), inv,
				orOff(cfg.DNS.Listen), orOff(cfg.XDS.Listen), orOff(cfg.Webhook.Listen), orOff(cfg.Admin.Listen)); err != nil {
				return err
			}
			if len(previous) == 0 {
				return nil
			}
			change, err := policy.CompareCatalogs(previous, cfg.Policy.Catalogs, cfg.Policy.MaxShrink)
			verdict := "a running serve would reload it"
			if err != nil {
				verdict = "a running serve would refuse this reload"
			}
			_, _ = fmt.Fprintf(cmd.OutOrStdout(), "reload: %s: %s (policy.max_shrink %.0f%%)\n", change, verdict, 100*cfg.Policy.MaxShrink)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "configuration `FILE`")
	f.StringArrayVar(&o.sets, "set", nil, "set any config key, `SECTION.KEY=VALUE` (repeatable)")
	f.StringArrayVar(&previous, "previous-catalog", nil, "catalog `FILE` serving now (repeatable): show the change a reload would make")
	return cmd
}

func orOff(s string) string {
	if s == "" {
		return "off"
	}
	return s
}
