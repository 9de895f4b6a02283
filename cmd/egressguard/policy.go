package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/policy/plan"
)

func newPolicyCmd(ro *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Evaluate and test the policy offline",
	}
	cmd.AddCommand(append([]*cobra.Command{newPolicyEvalCmd(ro), newPolicyTestCmd(ro)}, newPolicyReviewCmds(ro)...)...)
	return cmd
}

type evalOptions struct {
	workload string
	dest     string
	output   string
	method   string
	path     string
	headers  []string
}

func newPolicyEvalCmd(ro *rootOptions) *cobra.Command {
	o := &evalOptions{}
	cmd := &cobra.Command{
		Use:   "eval --workload env=staging,app=checkout --dest api-m.paypal.com:443",
		Short: "Print the decision for one workload and destination",
		Long: `eval compiles the plan of the workload's class, exactly as the enforcers do, and
prints its decision for the destination: the action, the rule and its reason.

--workload is either KEY=VALUE pairs (env or environment, name, namespace,
sidecar=true for a workload that runs the egressguard sidecar; any other key is
a label) or the name of a workload in --inventory.

With --path, --header or --method, eval decides one HTTP request the way the
sidecar does for hosts with request-level rules (plan.DecideRequest) and says
which enforcement point decides it: the sidecar per request, or, for a workload
without the sidecar, the catalog's request_rules_fallback at DNS and the
connection. A credential is never printed: its kind and a fingerprint (the
first 12 hex digits of its SHA-256) only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEval(cmd, ro, o)
		},
	}
	cmd.Flags().StringVar(&o.workload, "workload", "env=staging", "the calling workload")
	cmd.Flags().StringVar(&o.dest, "dest", "", "destination: host[:port], IP[:port] (any inet_aton form), [IPv6]:port, or a URL (https://api.stripe.com/v1/charges, dns://name for a DNS lookup)")
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVar(&o.method, "method", "", "HTTP method of a request decision (default GET)")
	cmd.Flags().StringVar(&o.path, "path", "", "request path (as sent: query, escapes and dot segments allowed) of a request decision (default: the path of a URL --dest, else /)")
	cmd.Flags().StringArrayVar(&o.headers, "header", nil, `request header "Name: value" of a request decision (repeatable; a repeated name joins its values with ",")`)
	_ = cmd.MarkFlagRequired("dest")
	return cmd
}

// requestResult is a request decision as eval and /api/decide show it: no
// header value, only header names, the normalised path and the credential's
// kind and fingerprint.
type requestResult struct {
	Request    requestView              `json:"request"`
	Decision   plan.RequestDecision     `json:"decision"`
	Credential *policy.CredentialRecord `json:"credential,omitempty"`
	EnforcedBy []string                 `json:"enforced_by"`
}

type requestView struct {
	Method string `json:"method"`
	// Path is the normal form the rules match (no query); "" when the raw
	// path has none.
	Path    string   `json:"path"`
	Headers []string `json:"headers,omitempty"` // names only
}

// newHTTPRequest builds a request from eval's flags or /api/decide's query.
// requestPath is path, or else the path (and query) of dest when dest is
// an http(s) URL: `--dest https://api.stripe.com/v1/charges --header ...`
// decides a request to /v1/charges, not to /.
func requestPath(path, dest string) string {
	if path != "" {
		return path
	}
	u, err := url.Parse(dest)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return ""
	}
	p := u.EscapedPath()
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	return p
}

func newHTTPRequest(method, path string, headers []string) (policy.HTTPRequest, error) {
	r := policy.HTTPRequest{Method: strings.ToUpper(method), Path: path}
	if r.Method == "" {
		r.Method = "GET"
	}
	if r.Path == "" {
		r.Path = "/"
	}
	for _, h := range headers {
		if err := r.AddHeader(h); err != nil {
			return r, err
		}
	}
	return r, nil
}

// decideRequest decides one request for w's class and names the enforcement
// point: the sidecar when the host rule has request rules; for a workload
// without the sidecar whose class would have them with it, the fallback.
func decideRequest(eng *policy.Engine, w *inventory.Workload, dest plan.Destination, r policy.HTTPRequest) (requestResult, error) {
	p, err := eng.PlanFor(w)
	if err != nil {
		return requestResult{}, err
	}
	pr := r.Plan()
	d := p.DecideRequest(dest, pr)
	res := requestResult{Decision: d, Credential: policy.Credential(d, pr), EnforcedBy: policy.RequestEnforcedBy(d.Rule)}
	res.Request = requestView{Method: r.Method}
	res.Request.Path, _ = plan.NormalizePath(r.Path)
	for name := range r.Headers {
		res.Request.Headers = append(res.Request.Headers, name)
	}
	slices.Sort(res.Request.Headers)
	if d.Request == nil && !w.Sidecar {
		with := *w
		with.Sidecar = true
		if sp, err := eng.PlanFor(&with); err == nil && sp.DecideRequest(dest, pr).Request != nil {
			res.EnforcedBy = []string{"dns and sidecar (connection level): the catalog's request_rules_fallback, because this workload does not run the egressguard sidecar that decides each request"}
		}
	} else if d.Request == nil {
		res.EnforcedBy = enforcedBy(d.Rule)
	}
	return res, nil
}

func writeRequestText(out io.Writer, w *inventory.Workload, class, dest string, res requestResult) error {
	d := res.Decision
	action := d.Action.String()
	if t := d.Target(); t != nil {
		action += " -> " + targetText(t)
	}
	if d.WouldDeny {
		action += fmt.Sprintf(" (report mode: would %s)", d.Matched)
	}
	path := res.Request.Path
	if path == "" {
		path = "(not in normal form)"
	}
	rows := [][2]string{
		{"workload", describeWorkload(w)},
		{"class", class},
		{"destination", dest},
		{"request", res.Request.Method + " " + path},
		{"headers", strings.Join(res.Request.Headers, ", ")},
		{"decision", action},
		{"rule", d.RuleID()},
		{"reason", d.Reason()},
	}
	if c := res.Credential; c != nil {
		rows = append(rows, [2]string{"credential", c.Kind + " (fingerprint " + c.Fingerprint + ")"})
	}
	rows = append(rows, [2]string{"enforced by", strings.Join(res.EnforcedBy, ", ")})
	for _, r := range rows {
		if _, err := fmt.Fprintf(out, "%-12s %s\n", r[0], r[1]); err != nil {
			return err
		}
	}
	return nil
}

// targetText renders a redirect target as host[:port][ (tls)].
func targetText(t *plan.Redirect) string {
	s := t.Host
	if t.Port != 0 {
		s += fmt.Sprintf(":%d", t.Port)
	}
	if t.TLS {
		s += " (tls)"
	}
	return s
}

func runEval(cmd *cobra.Command, ro *rootOptions, o *evalOptions) error {
	if o.output != "text" && o.output != "json" {
		return fmt.Errorf("--output: want text or json, not %q", o.output)
	}
	ctx := cmd.Context()
	w, dest, err := ro.parseQuery(o.workload, o.dest)
	if err != nil {
		return err
	}
	eng, err := ro.newEngine(ctx, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	if o.method != "" || o.path != "" || len(o.headers) > 0 {
		req, err := newHTTPRequest(o.method, requestPath(o.path, o.dest), o.headers)
		if err != nil {
			return fmt.Errorf("--header: %w", err)
		}
		res, err := decideRequest(eng, w, dest, req)
		if err != nil {
			return err
		}
		if o.output == "json" {
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(struct {
				Workload      *inventory.Workload `json:"workload"`
				Class         string              `json:"class"`
				Destination   string              `json:"destination"`
				PolicyVersion string              `json:"policy_version"`
				requestResult
			}{w, eng.ClassDescription(w), o.dest, eng.Version(), res})
		}
		return writeRequestText(cmd.OutOrStdout(), w, eng.ClassDescription(w), o.dest, res)
	}
	d, err := eng.Decide(w, dest)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if o.output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Workload      *inventory.Workload `json:"workload"`
			Class         string              `json:"class"`
			Destination   string              `json:"destination"`
			Decision      plan.Decision       `json:"decision"`
			PolicyVersion string              `json:"policy_version"`
			EnforcedBy    []string            `json:"enforced_by"`
			Notes         []string            `json:"notes,omitempty"`
		}{w, eng.ClassDescription(w), o.dest, d, eng.Version(), enforcedBy(d.Rule), decisionNotes(d, dest)})
	}
	return writeDecisionText(out, w, eng.ClassDescription(w), o.dest, d, decisionNotes(d, dest))
}

func writeDecisionText(out io.Writer, w *inventory.Workload, class, dest string, d plan.Decision, notes []string) error {
	action := d.Action.String()
	if t := d.Target(); t != nil {
		action += " -> " + targetText(t)
	}
	if d.WouldDeny {
		action += fmt.Sprintf(" (report mode: would %s)", d.Matched)
	}
	rows := [][2]string{
		{"workload", describeWorkload(w)},
		{"class", class},
		{"destination", dest},
		{"decision", action},
		{"rule", d.RuleID()},
		{"reason", d.Reason()},
	}
	if d.Rule.Category != "" {
		rows = append(rows, [2]string{"category", d.Rule.Category})
	}
	rows = append(rows, [2]string{"enforced by", strings.Join(enforcedBy(d.Rule), ", ")})
	for _, n := range notes {
		rows = append(rows, [2]string{"note", n})
	}
	for _, r := range rows {
		if _, err := fmt.Fprintf(out, "%-12s %s\n", r[0], r[1]); err != nil {
			return err
		}
	}
	return nil
}

// enforcedBy names the enforcement points that hold the deciding rule
// (plan.EnforcedBy); the synthetic default and malformed rules apply
// wherever nothing else matched or normalisation failed.
func enforcedBy(r *plan.Rule) []string {
	switch r.ID {
	case plan.DefaultRuleID:
		return []string{"dns and sidecar (the plan's default, where no rule matched)"}
	case plan.MalformedRuleID:
		return []string{"every surface (refused before any rule: not in normal form)"}
	}
	return plan.EnforcedBy(r)
}

// decisionNotes says what a decision means at each enforcement point where
// they differ (DESIGN.md, "Decisions on the wire").
func decisionNotes(d plan.Decision, dest plan.Destination) []string {
	if n, ok := plan.NoteTLSRedirect(d, dest); ok {
		return n.Lines()
	}
	return nil
}

func describeWorkload(w *inventory.Workload) string {
	s := w.Environment
	if w.Name != "" {
		s = w.Name + " (" + w.Environment + ")"
		if w.Namespace != "" {
			s = w.Namespace + "/" + s
		}
	}
	if len(w.Labels) > 0 {
		keys := make([]string, 0, len(w.Labels))
		for k := range w.Labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			keys[i] = k + "=" + w.Labels[k]
		}
		s += " [" + strings.Join(keys, ",") + "]"
	}
	return s
}

// parseQuery reads the --workload and --dest flags of eval and explain.
func (o *rootOptions) parseQuery(workload, dest string) (*inventory.Workload, plan.Destination, error) {
	inv, err := o.loadInventory(o.InventoryFile)
	if err != nil {
		return nil, plan.Destination{}, err
	}
	w, err := parseWorkload(workload, inv)
	if err != nil {
		return nil, plan.Destination{}, fmt.Errorf("--workload: %w", err)
	}
	d, err := policy.ParseDestination(dest)
	if err != nil {
		return nil, plan.Destination{}, fmt.Errorf("--dest: %w", err)
	}
	return w, d, nil
}

// parseWorkload reads "env=staging,app=checkout" or the name of a workload
// in the inventory.
func parseWorkload(s string, inv *inventory.Snapshot) (*inventory.Workload, error) {
	if !strings.Contains(s, "=") {
		for _, w := range inv.Workloads() {
			if w.Name == s || w.Namespace+"/"+w.Name == s {
				return w, nil
			}
		}
		return nil, fmt.Errorf("no workload named %q in the inventory (use env=...,label=... to describe one)", s)
	}
	w := &inventory.Workload{Name: "cli"}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not KEY=VALUE", kv)
		}
		switch k {
		case "env", "environment":
			w.Environment = v
		case "name":
			w.Name = v
		case "namespace":
			w.Namespace = v
		case "sidecar":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("sidecar=%q: want true or false", v)
			}
			w.Sidecar = b
		default:
			if w.Labels == nil {
				w.Labels = map[string]string{}
			}
			w.Labels[k] = v
		}
	}
	if w.Environment == "" {
		w.Environment = inv.DefaultEnvironment()
	}
	return w, nil
}

type testOptions struct {
	output    string
	verbose   bool
	coverage  bool
	threshold string
}

func newPolicyTestCmd(ro *rootOptions) *cobra.Command {
	o := &testOptions{}
	cmd := &cobra.Command{
		Use:   "test [DIR|FILE...]",
		Short: "Run the Rego unit tests and the YAML scenarios through the compiled plans",
		Long: `test runs the Rego unit tests (test_ rules in *_test.rego, OPA's tester) of the
policy and of the given directories, and every scenario file (*.yaml with a
top-level "scenarios" list) given, plus the scenarios shipped for the embedded
default catalog. Each scenario is decided by the compiled plan of its workload's
class, exactly as the enforcers decide. A failure names the scenario; the exit
code is non-zero when anything fails.

--coverage also reports OPA's Rego coverage of the policy modules (the embedded
default policy and the --policy DIR modules; tests are not counted): per file,
the percentage and the lines no test evaluated, and the total. The command
fails (exit 1) when the total is below the threshold: --threshold N, or else
the single number in DIR/.egressguard-coverage of the --policy DIR, or else 0.
--threshold implies --coverage.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			threshold, err := o.coverageThreshold(cmd, ro)
			if err != nil {
				return err
			}
			eng, err := ro.newEngine(ctx, prometheus.NewRegistry())
			if err != nil {
				return err
			}
			rep, err := policy.RunTestsWith(ctx, eng, policy.TestOptions{Paths: args, Coverage: o.coverage})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if o.output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				if err := rep.WriteText(out, o.verbose); err != nil {
					return err
				}
				if rep.Coverage != nil {
					if err := rep.Coverage.WriteText(out); err != nil {
						return err
					}
				}
			}
			var errs []error
			if n := rep.Failed(); n > 0 {
				errs = append(errs, fmt.Errorf("%d policy test(s) failed", n))
			}
			if rep.Coverage != nil {
				errs = append(errs, rep.Coverage.CheckThreshold(threshold))
			}
			if err := errors.Join(errs...); err != nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	cmd.Flags().BoolVarP(&o.verbose, "verbose", "v", false, "list passing tests too")
	cmd.Flags().BoolVar(&o.coverage, "coverage", false, "report Rego coverage of the policy modules (OPA's) and enforce the threshold")
	cmd.Flags().StringVar(&o.threshold, "threshold", "", "minimum total coverage `PERCENT` (0-100; default: the --policy DIR's "+policy.CoverageThresholdFile+" file, else 0); implies --coverage")
	return cmd
}

// coverageThreshold resolves the coverage threshold: --threshold, else the
// policy dir's .egressguard-coverage, else 0. A set --threshold turns
// coverage on.
func (o *testOptions) coverageThreshold(cmd *cobra.Command, ro *rootOptions) (float64, error) {
	if o.output != "text" && o.output != "json" {
		return 0, fmt.Errorf("--output: want text or json, not %q", o.output)
	}
	if cmd.Flags().Changed("threshold") {
		o.coverage = true
		f, err := policy.ParseCoverageThreshold(o.threshold)
		if err != nil {
			return 0, fmt.Errorf("--threshold: %w", err)
		}
		return f, nil
	}
	if !o.coverage || ro.PolicyDir == "" {
		return 0, nil
	}
	f, _, err := policy.ReadCoverageThreshold(ro.PolicyDir)
	return f, err
}
