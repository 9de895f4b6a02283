package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/egressguard/egressguard/inject"
	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/xds"
	"github.com/egressguard/egressguard/xds/stagingca"
)

// interceptSection is serve's "intercept:" section: HTTPS interception for
// hosts with request-level rules (docs/https.md).
type interceptSection struct {
	// Enabled creates the staging CA (default true) in every serve that
	// serves xDS or the webhook. Off: intercepted rules become denials at
	// the sidecar and pods get no trust bundle.
	Enabled bool `yaml:"enabled"`
	// CA is the staging CA: its key, optional operator certificate,
	// previous keys still trusted, leaf lifetime.
	CA stagingca.Config `yaml:"ca"`
}

// validate checks the section, enabled or not, without reading files.
func (s *interceptSection) validate() []error {
	if err := s.CA.Validate(); err != nil {
		return []error{fmt.Errorf("intercept.ca.%w", err)}
	}
	return nil
}

// wanted reports whether this serve needs the CA: it mints leaves for xDS
// and hands anchors to the webhook; a DNS-only instance (the node-local
// DaemonSet) never holds the key.
func (s *interceptSection) wanted(cfg serveConfig) bool {
	return s.Enabled && (cfg.XDS.Listen != "" || cfg.Webhook.Enabled())
}

// newStagingCA loads the staging CA, registers its metrics and permits the
// hosts the current policy intercepts.
func newStagingCA(s interceptSection, eng *policy.Engine, log *zap.Logger, reg prometheus.Registerer) (*stagingca.Authority, error) {
	ca, err := stagingca.New(s.CA, log)
	if err != nil {
		return nil, fmt.Errorf("intercept.ca: %w", err)
	}
	if err := ca.SetPermitted(eng.InterceptHosts()); err != nil {
		return nil, fmt.Errorf("intercept.ca: %w", err)
	}
	if reg != nil {
		if err := reg.Register(ca); err != nil {
			return nil, fmt.Errorf("intercept: metrics: %w", err)
		}
	}
	return ca, nil
}

// permitIntercepts gives the staging CA the hosts of the policy now
// serving. It runs on every policy activation before the enforcers rebuild,
// so xDS never builds an intercept chain for a host the CA refuses. A
// refusal (a cert_file whose constraints do not admit a new host) keeps the
// CA's previous hosts: leaves for the new host are refused and its
// connections fail closed; logged and counted.
func (g *guard) permitIntercepts() {
	if g.ca == nil {
		return
	}
	if err := g.ca.SetPermitted(g.engine.InterceptHosts()); err != nil {
		g.log.Error("intercept: the staging CA keeps its previous hosts", zap.String("policy_version", g.engine.Version()), zap.Error(err))
	}
}

// xdsOptions makes sidecars intercept with the staging CA's leaves. No CA:
// no option (a nil *Authority in the interface would not read as "none").
func (g *guard) xdsOptions() []xds.Option {
	if g.ca == nil {
		return nil
	}
	return []xds.Option{xds.WithCertificates(g.ca)}
}

// injectOptions makes injected pods trust the staging CA's anchors.
func (g *guard) injectOptions() []inject.Option {
	if g.ca == nil {
		return nil
	}
	return []inject.Option{inject.WithStagingCA(g.ca.AnchorsPEM)}
}

// runStagingCA adds the CA's key watcher and leaf renewal to the group.
func (g *guard) runStagingCA(add func(execute func() error, interrupt func(error)), ctx context.Context) {
	if g.ca == nil {
		return
	}
	cctx, cancel := context.WithCancel(ctx)
	add(func() error { return g.ca.Run(cctx) }, func(error) { cancel() })
}

func newCACmd(ro *rootOptions) *cobra.Command {
	ca := &cobra.Command{
		Use:   "ca",
		Short: "The staging CA of HTTPS interception",
		Args:  cobra.NoArgs,
	}
	o := &serveFlags{}
	anchors := &cobra.Command{
		Use:   "anchors [--config FILE]",
		Short: "Print the staging CA anchors (PEM) that injected pods trust",
		Long: `anchors loads the policy and the staging CA exactly as serve does (intercept.ca
of --config) and prints the anchors pods trust: the current CA certificate, then
those of intercept.ca.previous_key_files. A generated anchor depends only on the
key and the intercepted hosts, so this is byte for byte what every serve replica
with the same key and policy hands the webhook. A summary goes to stderr.

Without intercept.ca.key_file the CA is ephemeral: each process has its own, so
there is nothing to print.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.resolve(cmd, ro)
			if err != nil {
				return err
			}
			if errs := cfg.Intercept.validate(); len(errs) > 0 {
				return errors.Join(errs...)
			}
			if cfg.Intercept.CA.KeyFile == "" {
				return errors.New("intercept.ca.key_file is not set: the staging CA is ephemeral (one per serve process), its anchors exist only in that process")
			}
			// Build the guard as validate does: nothing bound, no cluster
			// contacted; xds on so that the CA is built as serve builds it.
			bcfg := cfg
			bcfg.Intercept.Enabled = true
			bcfg.DNS.Listen, bcfg.Webhook.Listen, bcfg.Decisions.File = "", "", ""
			if bcfg.XDS.Listen == "" {
				bcfg.XDS.Listen = "127.0.0.1:0"
			}
			bcfg.Inventory = inventorySection{}
			bcfg.Admin.Auth.Kubernetes = false
			g, err := build(cmd.Context(), ro.Logger(), bcfg)
			if err != nil {
				return err
			}
			g.close()
			hosts := g.engine.InterceptHosts()
			fmt.Fprintf(cmd.ErrOrStderr(), "policy %s: %d intercepted host patterns: %s\n", g.engine.Version(), len(hosts), strings.Join(hosts, " "))
			_, err = cmd.OutOrStdout().Write(g.ca.AnchorsPEM())
			return err
		},
	}
	f := anchors.Flags()
	f.StringVar(&o.config, "config", "", "serve's configuration `FILE` (sections policy and intercept)")
	f.StringArrayVar(&o.sets, "set", nil, "set any config key, `SECTION.KEY=VALUE` (repeatable)")
	ca.AddCommand(anchors)
	return ca
}
