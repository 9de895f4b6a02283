package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/policy/review"
)

// Exit codes of `policy diff`.
const (
	diffExitOK     = 0 // no change widens non-production access to production
	diffExitPolicy = 1 // a side's policy does not load or compile
	diffExitUsage  = 2 // bad flags, no such directory or git ref, unreadable inputs
	diffExitWidens = 3 // the change widens non-production access to production
)

func newPolicyReviewCmds(ro *rootOptions) []*cobra.Command {
	return []*cobra.Command{newPolicyDiffCmd(ro), newPolicyLintCmd(ro), newPolicyFmtCmd(ro), newPolicyExplainCmd(ro)}
}

// parseNow reads --now (YYYY-MM-DD or RFC 3339; "" = the real clock).
func parseNow(s string) (func() time.Time, error) {
	if s == "" {
		return time.Now, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		if t, err = time.Parse("2006-01-02", s); err != nil {
			return nil, fmt.Errorf("--now: want YYYY-MM-DD or RFC 3339, not %q", s)
		}
	}
	return func() time.Time { return t }, nil
}

type diffOptions struct {
	base, head       string
	decisions        []string
	output           string
	maxRows          int
	repo             string
	now              string
	noDefaultCatalog bool
}

func newPolicyDiffCmd(ro *rootOptions) *cobra.Command {
	o := &diffOptions{}
	cmd := &cobra.Command{
		Use:   "diff --base DIR|REF --head DIR|REF",
		Short: "Show what a policy change would block, allow or redirect",
		Long: `diff compiles two versions of the policy and compares their decisions over every
workload class (one per environment named in either catalog, the default
workload, each exception's selector, the --inventory workloads, the workloads
of scenario files and of recorded decisions) and every destination drawn from
the plans' patterns (exact hosts, a probe name under each wildcard, the network
address and a host of each CIDR; no port and each port a rule names), the
scenario files, and recorded decision logs (--decisions, JSON lines in
decision-record shape).

A version is a directory or a git ref of the repository in the current
directory (REF or REF:PATH, read with git archive). Layout: catalog/*.yaml,
policy/*.rego, scenarios/*.yaml; or flat: *.yaml catalogs (files with a
top-level "scenarios:" key are scenario files) and *.rego. Catalogs are merged
after the embedded default catalog unless --no-default-catalog.

Exit codes: 0 no widening; 3 the change widens access from a non-production
environment to production (a deny or redirect that becomes allow for a guarded
class, or a rule that newly allows a production zone or CIDR); 1 a version's
policy does not load or compile; 2 usage or input errors (flags, ref, files).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDiff(cmd, ro, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.base, "base", "", "base version: `DIR` or git REF[:PATH]")
	f.StringVar(&o.head, "head", "", "head version: `DIR` or git REF[:PATH]")
	f.StringArrayVar(&o.decisions, "decisions", nil, "recorded decision log `FILE` (JSON lines; repeatable)")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text, json or markdown")
	f.IntVar(&o.maxRows, "max-rows", 30, "markdown: rows per table before \"and N more\"")
	f.StringVar(&o.repo, "repo", "", "git repository `DIR` refs are read from (default: current directory)")
	f.StringVar(&o.now, "now", "", "evaluate exception expiry at this time (YYYY-MM-DD or RFC 3339; default now)")
	f.BoolVar(&o.noDefaultCatalog, "no-default-catalog", false, "do not merge the embedded default catalog under both versions")
	return cmd
}

func runDiff(cmd *cobra.Command, ro *rootOptions, o *diffOptions) error {
	usage := func(err error) error { return &exitError{code: diffExitUsage, err: err} }
	for _, name := range []string{"base", "head"} {
		if !cmd.Flags().Changed(name) {
			return usage(fmt.Errorf("--%s is required: a DIR or a git REF[:PATH]", name))
		}
	}
	if o.output != "text" && o.output != "json" && o.output != "markdown" {
		return usage(fmt.Errorf("--output: want text, json or markdown, not %q", o.output))
	}
	now, err := parseNow(o.now)
	if err != nil {
		return usage(err)
	}
	inv, err := ro.loadInventory(ro.InventoryFile)
	if err != nil {
		return usage(err)
	}
	var in review.Inputs
	in.Inventory = inv
	for _, f := range o.decisions {
		recs, err := review.ReadDecisionFile(f)
		if err != nil {
			return usage(err)
		}
		in.Decisions = append(in.Decisions, recs...)
	}
	lo := review.LoadOptions{RepoDir: o.repo, ReplaceDefaultPolicy: ro.ReplacePolicy, NoDefaultCatalog: o.noDefaultCatalog, Now: now, Log: ro.Logger()}
	load := func(spec, which string) (*review.Side, error) {
		s, err := review.Load(cmd.Context(), spec, lo)
		if err == nil {
			return s, nil
		}
		if errors.Is(err, review.ErrInput) {
			return nil, usage(fmt.Errorf("--%s: %w", which, err))
		}
		// main does not print exit-1 errors (scan findings); say it here.
		fmt.Fprintf(cmd.ErrOrStderr(), "egressguard: --%s: %v\n", which, err)
		return nil, &exitError{code: diffExitPolicy, err: fmt.Errorf("--%s: %w", which, err)}
	}
	base, err := load(o.base, "base")
	if err != nil {
		return err
	}
	defer base.Close()
	head, err := load(o.head, "head")
	if err != nil {
		return err
	}
	defer head.Close()
	rep, err := review.Diff(base, head, in)
	if err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "egressguard: %v\n", err)
		return &exitError{code: diffExitPolicy, err: err}
	}
	out := cmd.OutOrStdout()
	switch o.output {
	case "json":
		err = rep.WriteJSON(out)
	case "markdown":
		err = rep.WriteMarkdown(out, review.MarkdownOptions{MaxRows: o.maxRows})
	default:
		err = rep.WriteText(out)
	}
	if err != nil {
		return usage(err)
	}
	if rep.Widens {
		return &exitError{code: diffExitWidens, err: errors.New("policy diff: the change widens access from non-production to production")}
	}
	return nil
}

type lintOptions struct {
	output string
	now    string
}

func newPolicyLintCmd(ro *rootOptions) *cobra.Command {
	o := &lintOptions{}
	cmd := &cobra.Command{
		Use:   "lint [DIR]",
		Short: "Check the policy conventions (rule ids and reasons, exception expiry, production allows)",
		Long: `lint compiles the policy in DIR (layout as for diff; default: the --catalog and
--policy flags) and checks, for every workload class:
  - rule-id-reason: every rule has an id and a reason;
  - exception-expiry: every exception has an owner, a ticket and expires no
    more than 90 days ahead (expired exceptions are warnings);
  - production-allow: no rule other than an exception allows a production zone
    or CIDR to a non-production environment;
  - host-network-opt-out: every host_network_opt_outs entry is listed (info)
    and held to the exception-expiry rules.
Exit code 1 when there is an error finding, 2 when the policy does not load.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			now, err := parseNow(o.now)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			inv, err := ro.loadInventory(ro.InventoryFile)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			var side *review.Side
			if len(args) == 1 {
				side, err = review.Load(cmd.Context(), args[0], review.LoadOptions{ReplaceDefaultPolicy: ro.ReplacePolicy, Now: now, Log: ro.Logger()})
			} else {
				side, err = review.FromEngine(cmd.Context(), ro.policyOptionsAt(now), ro.Logger())
			}
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			defer side.Close()
			fs, err := review.Lint(side, inv, now())
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			out := cmd.OutOrStdout()
			if o.output == "json" {
				err = reviewJSON(out, fs)
			} else {
				err = review.WriteFindings(out, fs)
			}
			if err != nil {
				return err
			}
			if n := review.Errors(fs); n > 0 {
				return &exitError{code: 1, err: fmt.Errorf("policy lint: %d error(s)", n)}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVar(&o.now, "now", "", "check expiry at this time (YYYY-MM-DD or RFC 3339; default now)")
	return cmd
}

func (o *rootOptions) policyOptionsAt(now func() time.Time) policy.Options {
	p := o.policyOptions()
	p.Now = now
	return p
}

func newPolicyFmtCmd(ro *rootOptions) *cobra.Command {
	var check, write bool
	cmd := &cobra.Command{
		Use:   "fmt [DIR|FILE...]",
		Short: "Format Rego with OPA's formatter",
		Long: `fmt runs OPA's formatter (Rego v1) over the given files and directories (their
*.rego; default: --policy). Without flags it lists the files that would change.
--check exits 1 when any file would change; -w rewrites them in place.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				if ro.PolicyDir == "" {
					return &exitError{code: 2, err: errors.New("fmt: name files or directories, or set --policy")}
				}
				args = []string{ro.PolicyDir}
			}
			files, err := review.RegoFiles(args)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			res, ferr := review.Format(files)
			out := cmd.OutOrStdout()
			changed := 0
			for _, r := range res {
				if !r.Changed {
					continue
				}
				changed++
				fmt.Fprintln(out, r.File)
				if write {
					if err := os.WriteFile(r.File, r.Formatted, 0o644); err != nil {
						return &exitError{code: 2, err: err}
					}
				}
			}
			if ferr != nil {
				return &exitError{code: 2, err: ferr}
			}
			if check && changed > 0 {
				return &exitError{code: 1, err: fmt.Errorf("policy fmt: %d file(s) not formatted (run egressguard policy fmt -w)", changed)}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "exit 1 if any file would change")
	cmd.Flags().BoolVarP(&write, "write", "w", false, "rewrite files in place")
	return cmd
}

type explainOptions struct {
	workload, dest, output string
}

func newPolicyExplainCmd(ro *rootOptions) *cobra.Command {
	o := &explainOptions{}
	cmd := &cobra.Command{
		Use:   "explain --workload env=staging,app=checkout --dest api.stripe.com:443",
		Short: "Explain a decision: the rule that matched, why the others did not, the catalog entry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w, dest, err := ro.parseQuery(o.workload, o.dest)
			if err != nil {
				return err
			}
			side, err := review.FromEngine(cmd.Context(), ro.policyOptions(), ro.Logger())
			if err != nil {
				return err
			}
			x, err := review.Explain(side.Engine, w, dest)
			if err != nil {
				return err
			}
			if o.output == "json" {
				return reviewJSON(cmd.OutOrStdout(), x)
			}
			return x.WriteText(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.workload, "workload", "env=staging", "the calling workload: KEY=VALUE pairs or a workload name in --inventory")
	cmd.Flags().StringVar(&o.dest, "dest", "", "destination: host[:port], IP[:port] or [IPv6]:port")
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	_ = cmd.MarkFlagRequired("dest")
	return cmd
}

func reviewJSON(w io.Writer, v any) error {
	enc := newIndentEncoder(w)
	return enc.Encode(v)
}

func newIndentEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc
}
