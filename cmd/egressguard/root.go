package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// rootOptions are the flags every command that reads policy shares.
type rootOptions struct {
	Catalogs      []string
	PolicyDir     string
	ReplacePolicy bool
	InventoryFile string
	logLevel      string
	logFormat     string
	log           *zap.Logger
}

func newRootCmd() *cobra.Command {
	ro := &rootOptions{}
	root := &cobra.Command{
		Use:   "egressguard",
		Short: "Keep staging workloads from touching production",
		Long: `egressguard enforces one policy at three points: an xDS control plane for Envoy
sidecars and proxyless gRPC, a DNS resolver, and a secrets scanner for
staging configuration. See README.md.

Every command exits 2 on a usage error (an unknown command or flag, a bad
flag value, the wrong number of arguments); what 1 and other codes mean is
in each command's help.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			level := ro.logLevel
			if level == "" {
				level = "warn" // one-shot commands print results, not progress
				if cmd.Name() == "serve" {
					level = "info"
				}
			}
			l, err := newLogger(level, ro.logFormat)
			if err != nil {
				return err
			}
			ro.log = l
			return nil
		},
	}
	f := root.PersistentFlags()
	f.StringArrayVar(&ro.Catalogs, "catalog", nil, "operator catalog `FILE` merged over the embedded default (repeatable; later files win)")
	f.StringVar(&ro.PolicyDir, "policy", "", "`DIR` of extra Rego modules (and *_test.rego unit tests)")
	f.BoolVar(&ro.ReplacePolicy, "replace-default-policy", false, "use only the Rego in --policy, not the embedded default policy")
	f.StringVar(&ro.InventoryFile, "inventory", "", "static inventory `FILE` (workloads by source IP and node ID)")
	f.StringVar(&ro.logLevel, "log-level", "", "log level: debug, info, warn, error (default info for serve, warn otherwise)")
	f.StringVar(&ro.logFormat, "log-format", "console", "log format: json or console")

	root.AddCommand(
		newServeCmd(ro),
		newPolicyCmd(ro),
		newCACmd(ro),
		newValidateCmd(ro),
		newScanCmd(ro),
		newBootstrapCmd(ro),
		newIptablesCmd(ro),
		newTrustBundleCmd(ro),
		newVersionCmd(),
		newProxyStatusCmd(),
		newProxyConfigCmd(),
	)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(flagError(err)) })
	// The root, too, fails on an unknown command through runGroup, so that
	// it exits exitUsage like every other usage error (cobra's own check
	// returns a plain error: exit 1).
	root.Args, root.RunE = cobra.ArbitraryArgs, runGroup
	root.InitDefaultCompletionCmd()
	tidyCommands(root)
	return root
}

// tidyCommands walks the command tree once it is built:
//   - each command gets its --help flag now (cobra adds it lazily, after
//     this walk would have run);
//   - boolean flags render as plain switches ("--apply"), not as pflag
//     1.1's "--apply[=true|false]"; --apply=false still parses;
//   - a command that only groups subcommands (policy) fails on an unknown
//     one with a suggestion, where cobra would print help and exit 0;
//   - an argument-count error exits exitUsage (usageError).
func tidyCommands(c *cobra.Command) {
	c.InitDefaultHelpFlag()
	plain := func(f *pflag.Flag) {
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			f.Value = plainBool{f.Value}
		}
	}
	c.Flags().VisitAll(plain)
	c.PersistentFlags().VisitAll(plain)
	// (The root does this itself: cobra checks its arguments for unknown
	// subcommands and suggests.)
	if c.HasParent() && c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.RunE = runGroup
	}
	if args := c.Args; args != nil {
		c.Args = func(cmd *cobra.Command, a []string) error { return usageError(args(cmd, a)) }
	}
	for _, sub := range c.Commands() {
		tidyCommands(sub)
	}
}

// flagError rewrites pflag's error for a duration flag given a bare number
// ("--timeout 5") into advice with the unit; other errors pass unchanged.
func flagError(err error) error {
	var ive *pflag.InvalidValueError
	if errors.As(err, &ive) && ive.GetFlag().Value.Type() == "duration" {
		if _, perr := strconv.ParseFloat(ive.GetValue(), 64); perr == nil {
			return fmt.Errorf("--%s %s: %s", ive.GetFlag().Name, ive.GetValue(), noUnit(ive.GetValue()))
		}
	}
	return err
}

// plainBool hides pflag's IsBoolFlag, which makes its usage print
// "[=true|false]"; parsing relies on NoOptDefVal ("true"), which stays.
type plainBool struct{ pflag.Value }

// runGroup runs a command that only groups subcommands: alone it prints
// its help, with an unknown subcommand it fails and suggests the nearest.
func runGroup(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's default for the root
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	} else {
		msg += fmt.Sprintf("; run '%s --help' for the commands", cmd.CommandPath())
	}
	return usageError(errors.New(msg))
}

// exitUsage is every command's exit code for a usage error. Exit 1 keeps
// each command's own meaning (findings, a failed check, a widening diff's
// load error), so a typo in CI never reads as one of those.
const exitUsage = 2

// usageError gives err (nil stays nil; an exitError keeps its code) the
// exit code exitUsage.
func usageError(err error) error {
	var ee *exitError
	if err == nil || errors.As(err, &ee) {
		return err
	}
	return &exitError{code: exitUsage, err: err}
}

// Logger is the process logger (a no-op before flags are parsed).
func (o *rootOptions) Logger() *zap.Logger {
	if o.log == nil {
		return zap.NewNop()
	}
	return o.log
}

func (o *rootOptions) policyOptions() policy.Options {
	return policy.Options{CatalogFiles: o.Catalogs, PolicyDir: o.PolicyDir, ReplaceDefaultPolicy: o.ReplacePolicy}
}

// newEngine builds the policy engine exactly as serve does.
func (o *rootOptions) newEngine(ctx context.Context, reg prometheus.Registerer) (*policy.Engine, error) {
	return policy.NewEngine(ctx, o.policyOptions(), o.Logger().Named("policy"), reg)
}

// loadCatalog merges the embedded default catalog with the --catalog files.
func (o *rootOptions) loadCatalog() (*policy.Catalog, error) {
	files, err := policy.LoadCatalogFiles(o.Catalogs...)
	if err != nil {
		return nil, err
	}
	cat, _, err := policy.BuildCatalog(append([]policy.CatalogFile{policy.DefaultCatalog()}, files...), time.Now())
	return cat, err
}

// loadInventory reads --inventory, or returns an empty inventory in which
// every source is the default (staging) workload.
func (o *rootOptions) loadInventory(path string) (*inventory.Snapshot, error) {
	if path == "" {
		return inventory.Empty(inventory.DefaultEnvironment), nil
	}
	return inventory.LoadFile(path)
}

func newLogger(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.Development = false
		cfg.DisableStacktrace = true
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
	default:
		return nil, fmt.Errorf("--log-format: want json or console, not %q", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.OutputPaths = []string{"stderr"}
	cfg.ErrorOutputPaths = []string{"stderr"}
	return cfg.Build()
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "egressguard %s\n", version)
			return err
		},
	}
}
