package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/egressguard/egressguard/policy"
	secretscan "github.com/egressguard/egressguard/secrets-scan"
)

// scanGitAll is what a bare --git scans: the whole history.
const scanGitAll = "HEAD"

// Exit codes of `egressguard scan`.
const (
	scanExitClean    = 0
	scanExitFindings = 1
	scanExitError    = 2
)

// exitError carries a process exit code; main exits with ExitCode() when an
// error implements it (1 = findings, 2 = could not scan).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }
func (e *exitError) ExitCode() int { return e.code }

type scanOptions struct {
	format         string
	output         string
	baseline       string
	ignoreFiles    []string
	noGitignore    bool
	maxFileSize    int64
	workers        int
	git            string
	repo           string
	includeAllowed bool
	quiet          bool
	verbose        bool
	failOn         []string
}

func newScanCmd(ro *rootOptions) *cobra.Command {
	o := &scanOptions{}
	cmd := &cobra.Command{
		Use:   "scan [PATH...]",
		Short: "Find production secrets and endpoints in (non-production) configuration",
		Long: `scan reads configuration files (YAML incl. Kubernetes Secrets, JSON, TOML, INI,
.env, Java properties, tfvars, text) and reports what can act on production: live-mode
credentials, credentials of production accounts and projects, credentials in blocks that name
a production endpoint or mode, database and broker URLs that point at production, and exact
production values known by their salted fingerprints. Production is what the catalog says.

PATH may be a file, a directory (walked, honouring .gitignore and .egressguardignore) or "-"
for standard input. With --git RANGE (or --git=RANGE), the lines added by the commits in RANGE
are scanned instead; --git alone scans the whole history (HEAD).

The text report lists the findings, then notes, then skipped files counted by reason with one
example each, then a summary line. -v lists every skipped file; -q prints the findings only.

Exit status: 0 nothing that fails the scan, 1 findings that do, 2 the scan could not run.
By default production secrets and endpoints fail the scan; credentials whose environment
nothing reveals (kind "credential") and live-mode identifiers (kind "identifier") are
reported but pass unless --fail-on names them.
An "egressguard:allow <reason>" comment on a line (or the line above) silences its findings.`,
		Example: `  egressguard scan deploy/staging
  egressguard scan -q deploy/staging
  egressguard scan --format sarif --output scan.sarif .
  egressguard scan --baseline scan-baseline.json .
  egressguard scan --git origin/main..HEAD
  vault kv get -format=json secret/prod/app | egressguard scan fingerprints --source "vault prod/app"`,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runScan(cmd.Context(), ro, o, args, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.Flags().Changed("git"))
		},
	}
	// A usage error is "could not scan" (2), not "findings" (1).
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: scanExitError, err: fmt.Errorf("scan: %w", flagError(err))}
	})
	f := cmd.Flags()
	f.StringVar(&o.format, "format", "text", "report format: text, json or sarif")
	f.StringVarP(&o.output, "output", "o", "", "write the report to this file instead of standard output")
	f.StringVar(&o.baseline, "baseline", "", "report only findings whose fingerprint is not in this baseline (a JSON report or a list of fingerprints)")
	f.StringArrayVar(&o.ignoreFiles, "ignore-file", nil, "extra ignore file (.gitignore syntax; lines that are finding fingerprints ignore those findings)")
	f.BoolVar(&o.noGitignore, "no-gitignore", false, "scan files that .gitignore excludes")
	f.Int64Var(&o.maxFileSize, "max-file-size", secretscan.DefaultMaxFileSize, "skip files larger than this many bytes (without reading them)")
	f.IntVar(&o.workers, "workers", 0, "files scanned in parallel (0: one per CPU)")
	f.StringVar(&o.git, "git", "", "scan the lines added by the commits in `RANGE` (--git alone: the whole history)")
	f.Lookup("git").NoOptDefVal = scanGitAll
	f.StringVar(&o.repo, "repo", ".", "repository for --git")
	f.BoolVar(&o.includeAllowed, "include-allowed", false, "also report findings silenced by egressguard:allow comments")
	f.StringSliceVar(&o.failOn, "fail-on", nil, "also fail on these kinds besides production: `unknown` (credentials of unknown environment), identifier (live-mode identifiers)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "text report: the findings only, no notes, skips or summary")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "text report: one line per skipped file instead of counts by reason")
	cmd.AddCommand(newScanFingerprintsCmd())
	return cmd
}

func runScan(ctx context.Context, ro *rootOptions, o *scanOptions, args []string, stdin io.Reader, stdout io.Writer, gitMode bool) error {
	fail := func(err error) error { return &exitError{code: scanExitError, err: err} }
	log := ro.Logger().Named("scan")
	switch o.format {
	case "text", "json", "sarif":
	default:
		return fail(fmt.Errorf("scan: --format: unknown format %q (want text, json or sarif)", o.format))
	}
	if o.quiet && o.verbose {
		return fail(errors.New("scan: -q and -v: choose one"))
	}
	failOn, err := secretscan.ParseFailOn(o.failOn)
	if err != nil {
		return fail(fmt.Errorf("scan: --fail-on: %w", err))
	}
	if gitMode && len(args) == 1 && o.git == scanGitAll {
		// "--git origin/main..HEAD": pflag reads a bare --git as HEAD (its
		// optional value must be joined with "=") and leaves the range as
		// an argument. Paths are not allowed with --git, so one argument
		// after a bare --git is the range.
		o.git, args = args[0], nil
	}
	if gitMode && len(args) > 0 {
		return fail(errors.New("scan: --git scans a repository's history; give the repository with --repo, not paths"))
	}
	if !gitMode && len(args) == 0 {
		args = []string{"."}
	}
	cat, err := ro.loadCatalog()
	if err != nil {
		return fail(fmt.Errorf("scan: catalog: %w", err))
	}
	prod, err := productionFromCatalog(cat)
	if err != nil {
		return fail(fmt.Errorf("scan: catalog: %w", err))
	}
	det, err := secretscan.NewDetector(prod)
	if err != nil {
		return fail(fmt.Errorf("scan: %w", err))
	}
	var baseline map[string]bool
	if o.baseline != "" {
		bf, err := os.Open(o.baseline)
		if err != nil {
			return fail(fmt.Errorf("scan: --baseline: %w", err))
		}
		baseline, err = secretscan.LoadBaseline(bf)
		bf.Close()
		if err != nil {
			return fail(fmt.Errorf("scan: --baseline %s: %w", o.baseline, err))
		}
	}
	sc := secretscan.NewScanner(det, secretscan.Options{
		MaxFileSize: o.maxFileSize, Workers: o.workers, NoGitignore: o.noGitignore,
		IgnoreFiles: o.ignoreFiles, IncludeAllowed: o.includeAllowed,
	}, log)
	var res *secretscan.Result
	if gitMode {
		res, err = sc.ScanGit(ctx, o.repo, o.git)
	} else {
		res, err = sc.ScanPaths(ctx, args, stdin)
	}
	if res == nil {
		return fail(err)
	}
	if baseline != nil {
		res.ApplyBaseline(baseline)
	}
	for _, n := range res.Notices {
		log.Debug("scan notice", zap.String("file", n.File), zap.Int("line", n.Line), zap.String("reason", n.Reason), zap.Bool("skipped", n.Skipped))
	}
	out := stdout
	if o.output != "" {
		f, ferr := os.Create(o.output)
		if ferr != nil {
			return fail(fmt.Errorf("scan: --output: %w", ferr))
		}
		defer f.Close()
		out = f
	}
	if err != nil && res.Files == 0 && len(res.Findings) == 0 && o.format == "text" {
		return fail(err) // nothing was scanned: a "0 findings" summary would mislead
	}
	detail := secretscan.TextSummary
	switch {
	case o.quiet:
		detail = secretscan.TextQuiet
	case o.verbose:
		detail = secretscan.TextVerbose
	}
	var werr error
	switch o.format {
	case "json":
		werr = secretscan.WriteJSON(out, res)
	case "sarif":
		werr = secretscan.WriteSARIF(out, res, det.Rules(), version)
	default:
		werr = secretscan.WriteTextDetail(out, res, detail)
	}
	if werr != nil {
		return fail(fmt.Errorf("scan: writing the report: %w", werr))
	}
	if err != nil { // some paths could not be scanned at all
		return fail(err)
	}
	if n := res.Failing(failOn); n > 0 {
		return &exitError{code: scanExitFindings, err: fmt.Errorf("scan: %d findings fail the scan", n)}
	}
	return nil
}

// productionFromCatalog is the adapter from the policy catalog to what the
// scanner needs; secretscan does not import policy.
func productionFromCatalog(c *policy.Catalog) (secretscan.Production, error) {
	var p secretscan.Production
	if c == nil {
		return p, nil
	}
	for _, z := range c.Zones {
		p.Zones = append(p.Zones, policy.ZoneHosts(z)...) // "*.X" includes the apex X
	}
	p.CIDRs = append(p.CIDRs, c.CIDRs...)
	if c.JWT != nil {
		p.JWTIssuers, p.JWTAudiences = c.JWT.Issuers, c.JWT.Audiences
	}
	p.AccountIDs = map[string][]string{}
	for _, pr := range c.Providers {
		if pr.Disabled {
			continue
		}
		if len(pr.Accounts) > 0 {
			p.AccountIDs[pr.Name] = append(p.AccountIDs[pr.Name], pr.Accounts...)
		}
		for _, e := range pr.Endpoints {
			if e.Live == "" && e.Sandbox == nil {
				continue
			}
			pe := secretscan.ProviderEndpoint{Provider: pr.Name, Live: e.Live}
			if e.Sandbox != nil && !strings.HasPrefix(e.Sandbox.Host, "*") {
				pe.Sandbox = e.Sandbox.Host
			}
			p.Providers = append(p.Providers, pe)
		}
	}
	if c.Cloud != nil {
		p.AWSAccounts = append(p.AWSAccounts, c.Cloud.AWSAccounts...)
		p.GCPProjects = append(p.GCPProjects, c.Cloud.GCPProjects...)
	}
	var errs []error
	for i, f := range c.Fingerprints {
		salt, err := secretscan.DecodeSalt(f.Salt)
		if err != nil {
			errs = append(errs, fmt.Errorf("fingerprints[%d].salt: %w", i, err))
			continue
		}
		p.Fingerprints = append(p.Fingerprints, secretscan.FingerprintSet{Algorithm: f.Algorithm, Salt: salt, Values: f.Values, Source: f.Source})
	}
	return p, errors.Join(errs...)
}

func newScanFingerprintsCmd() *cobra.Command {
	var salt, source string
	cmd := &cobra.Command{
		Use:   "fingerprints",
		Short: "Turn production secret values (standard input) into the catalog's salted fingerprints",
		Long: `fingerprints reads production secret values on standard input and writes the catalog's
fingerprints section: hex(sha256(salt || value)) for each value, with a fresh random salt
(or --salt, base64). Input is JSON (every string leaf is a value, so "vault kv get
-format=json" output works as it is) or one value per line (KEY=value lines give their value).
Values shorter than 8 characters are skipped. Run it where the secrets already are (the
production vault's side): only hashes leave.`,
		Example:      `  vault kv get -format=json secret/prod/payments | egressguard scan fingerprints --source "vault prod/payments 2026-11-01" >> catalog.d/fingerprints.yaml`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var s []byte
			if salt != "" {
				var err error
				if s, err = secretscan.DecodeSalt(salt); err != nil {
					return &exitError{code: scanExitError, err: fmt.Errorf("scan fingerprints: --salt: %w", err)}
				}
			} else {
				s = make([]byte, 32)
				if _, err := rand.Read(s); err != nil {
					return &exitError{code: scanExitError, err: err}
				}
			}
			set, skipped, err := secretscan.MakeFingerprints(cmd.InOrStdin(), s, source)
			if err != nil {
				return &exitError{code: scanExitError, err: err}
			}
			if skipped > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "scan fingerprints: skipped %d values shorter than %d characters\n", skipped, secretscan.MinFingerprintValue)
			}
			return secretscan.WriteFingerprintsYAML(cmd.OutOrStdout(), set)
		},
	}
	cmd.Flags().StringVar(&salt, "salt", "", "salt (base64, 16+ bytes); default: 32 random bytes")
	cmd.Flags().StringVar(&source, "source", "", "where the values came from (kept in the catalog)")
	return cmd
}
