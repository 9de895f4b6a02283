package policy

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/egressguard/egressguard/policy/plan"
)

// ParseCatalog decodes one catalog file strictly and validates it. file is
// the name used in errors. The result is normalized: host patterns are
// lowercase punycode without a trailing dot, CIDRs are masked.
//
// All problems are returned at once (errors.Join of *FieldError).
func ParseCatalog(file string, data []byte) (*Catalog, error) {
	c := &Catalog{}
	d, err := decodeStrict(file, data, c)
	if err != nil {
		return nil, err
	}
	if err := c.validate(d); err != nil {
		return nil, err
	}
	return c, nil
}

// MarshalYAML-compatible rendering of a catalog (the inverse of ParseCatalog
// for a valid catalog).
func MarshalCatalog(c *Catalog) ([]byte, error) {
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("policy: marshal catalog: %w", err)
	}
	return b, nil
}

var (
	labelRe        = regexp.MustCompile(`^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$`)
	providerNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	awsAccountRe   = regexp.MustCompile(`^[0-9]{12}$`)
	exceptionIDRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	// accountRe keeps a provider account safe to substitute into a request
	// rule's regex without escaping.
	accountRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// normalizeName lowercases a DNS name, drops a trailing dot, converts an
// internationalised name to punycode and checks its syntax.
func normalizeName(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty name")
	}
	n, err := plan.NormalizeHost(s)
	if err != nil {
		return "", fmt.Errorf("bad name %q: %w", s, err)
	}
	if strings.Contains(n, "*") {
		return "", fmt.Errorf("bad name %q: wildcards are not allowed here", s)
	}
	for _, l := range strings.Split(n, ".") {
		if !labelRe.MatchString(l) {
			return "", fmt.Errorf("bad name %q: label %q is not a valid DNS label", s, l)
		}
	}
	return n, nil
}

// NormalizePattern checks and normalizes a host pattern: an exact name,
// "*.suffix" (strict subdomains of suffix) or, if allowStar, "*".
func NormalizePattern(s string, allowStar bool) (string, error) {
	switch {
	case s == "*":
		if !allowStar {
			return "", errors.New(`"*" (every name) is not allowed here`)
		}
		return s, nil
	case strings.HasPrefix(s, "*."):
		n, err := normalizeName(s[2:])
		if err != nil {
			return "", fmt.Errorf("bad pattern %q: %w", s, err)
		}
		return "*." + n, nil
	case strings.Contains(s, "*"):
		return "", fmt.Errorf("bad pattern %q: a wildcard is allowed only as the whole first label (\"*.example.com\")", s)
	}
	return normalizeName(s)
}

func normalizeCIDR(s string) (string, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil {
			return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()).String(), nil
		}
		return "", fmt.Errorf("bad CIDR %q: %w", s, err)
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		if p.Bits() < 0 {
			return "", fmt.Errorf("bad CIDR %q: IPv4-mapped prefix shorter than /96", s)
		}
	}
	if m := p.Masked(); m != p {
		return "", fmt.Errorf("bad CIDR %q: host bits set (did you mean %s?)", s, m)
	}
	return p.String(), nil
}

func (c *Catalog) validate(d *doc) error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }

	if e := c.Environments; e != nil {
		seen := map[string]string{}
		for _, l := range []struct {
			key  string
			list []string
		}{{"production", e.Production}, {"non_production", e.NonProduction}} {
			for i, n := range l.list {
				p := path{"environments", l.key, i}
				if strings.TrimSpace(n) == "" {
					add(d.errf(p, "empty environment name"))
					continue
				}
				ln := strings.ToLower(n)
				if prev, ok := seen[ln]; ok && prev != l.key {
					add(d.errf(p, "environment %q is listed as both %s and %s", n, prev, l.key))
				}
				seen[ln] = l.key
				l.list[i] = ln
			}
		}
		for i, n := range e.Report {
			ln := strings.ToLower(n)
			if seen[ln] == "production" {
				add(d.errf(path{"environments", "report", i}, "environment %q is production: report mode applies to guarded environments only", n))
			}
			e.Report[i] = ln
		}
	}
	for i, z := range c.Zones {
		n, err := NormalizePattern(z, false)
		if err != nil {
			add(d.errf(path{"zones", i}, "%v", err))
			continue
		}
		c.Zones[i] = n
	}
	for i, s := range c.CIDRs {
		n, err := normalizeCIDR(s)
		if err != nil {
			add(d.errf(path{"cidrs", i}, "%v", err))
			continue
		}
		c.CIDRs[i] = n
	}
	for i, s := range c.NAT64 {
		pfx, err := netip.ParsePrefix(s)
		if err == nil {
			err = plan.ValidNAT64(pfx)
		}
		if err != nil {
			add(d.errf(path{"nat64", i}, "%v", err))
			continue
		}
		c.NAT64[i] = pfx.String()
	}
	switch c.UnnamedTLS {
	case "", "allow", "deny":
	default:
		add(d.errf(path{"unnamed_tls"}, "%q: want allow or deny", c.UnnamedTLS))
	}
	switch c.RequestRulesFallback {
	case "", "allow", "deny":
	default:
		add(d.errf(path{"request_rules_fallback"}, "%q: want allow or deny", c.RequestRulesFallback))
	}
	if c.MailSink != nil {
		validateTarget(d, path{"mail_sink"}, c.MailSink, true, add)
	}
	names := map[string]int{}
	for i := range c.Providers {
		pv := &c.Providers[i]
		p := path{"providers", i}
		switch {
		case pv.Name == "":
			add(d.errf(p.with("name"), "provider name is required"))
		case !providerNameRe.MatchString(pv.Name):
			add(d.errf(p.with("name"), "bad provider name %q (lowercase letters, digits, '.', '_', '-')", pv.Name))
		default:
			if j, dup := names[pv.Name]; dup {
				add(d.errf(p.with("name"), "duplicate provider %q (first defined at line %d); a provider may appear once per file", pv.Name, d.line(path{"providers", j, "name"})))
			} else {
				names[pv.Name] = i
			}
		}
		if len(pv.Endpoints) == 0 && !pv.Disabled {
			// Switching a default provider off needs only its name.
			add(d.errf(p.with("endpoints"), "provider %q has no endpoints", pv.Name))
		}
		for j, a := range pv.Accounts {
			if !accountRe.MatchString(a) {
				add(d.errf(p.with("accounts", j), "bad account %q (letters, digits, '.', '_', '-')", a))
			}
		}
		if pv.Requests != nil {
			validateRequests(d, p.with("requests"), pv.Requests, add)
		}
		seenEP := map[string]int{}
		for j := range pv.Endpoints {
			ep := &pv.Endpoints[j]
			validateEndpoint(d, p.with("endpoints", j), ep, add)
			if ep.Requests != nil {
				validateRequests(d, p.with("endpoints", j, "requests"), ep.Requests, add)
			}
			key := fmt.Sprint(ep.Live, ep.CIDRs, ep.Ports)
			if k, dup := seenEP[key]; dup {
				add(d.errf(p.with("endpoints", j), "duplicate endpoint (same live host, cidrs and ports as endpoints[%d])", k))
			} else {
				seenEP[key] = j
			}
		}
	}
	if cl := c.Cloud; cl != nil {
		for i, a := range cl.AWSAccounts {
			if !awsAccountRe.MatchString(a) {
				add(d.errf(path{"cloud", "aws_accounts", i}, "bad AWS account ID %q (want 12 digits)", a))
			}
		}
		for i, g := range cl.GCPProjects {
			if strings.TrimSpace(g) == "" {
				add(d.errf(path{"cloud", "gcp_projects", i}, "empty GCP project"))
			}
		}
		for i, g := range cl.AzureSubscriptions {
			if strings.TrimSpace(g) == "" {
				add(d.errf(path{"cloud", "azure_subscriptions", i}, "empty Azure subscription"))
			}
		}
	}
	for i := range c.Fingerprints {
		f := &c.Fingerprints[i]
		p := path{"fingerprints", i}
		if f.Algorithm != "sha256" {
			add(d.errf(p.with("algorithm"), "unsupported algorithm %q (want sha256)", f.Algorithm))
		}
		if _, err := base64.StdEncoding.DecodeString(f.Salt); err != nil || f.Salt == "" {
			add(d.errf(p.with("salt"), "salt must be non-empty standard base64"))
		}
		for j, v := range f.Values {
			f.Values[j] = strings.ToLower(v)
			if b, err := hex.DecodeString(v); err != nil || len(b) != 32 {
				add(d.errf(p.with("values", j), "bad sha256 fingerprint (want 64 hex digits)"))
			}
		}
	}
	ids := map[string]int{}
	for i := range c.Exceptions {
		validateException(d, path{"exceptions", i}, &c.Exceptions[i], ids, i, add)
	}
	return errors.Join(errs...)
}

func validateTarget(d *doc, p path, t *Target, needPort bool, add func(error)) {
	if t.Host == "" {
		add(d.errf(p.with("host"), "host is required"))
	} else if n, err := normalizeName(t.Host); err != nil {
		add(d.errf(p.with("host"), "%v", err))
	} else {
		t.Host = n
	}
	if needPort && t.Port == 0 {
		add(d.errf(p.with("port"), "port is required"))
	}
}

func validatePorts(d *doc, p path, ports []uint16, add func(error)) {
	for i, port := range ports {
		if port == 0 {
			add(d.errf(p.with(i), "port 0 is not a port"))
		}
	}
}

func validateEndpoint(d *doc, p path, e *Endpoint, add func(error)) {
	if e.Live == "" && len(e.Ports) == 0 && len(e.CIDRs) == 0 {
		add(d.errf(p, "endpoint has neither live nor ports nor cidrs: set live (a host pattern), ports, cidrs, or a combination"))
	}
	for j, s := range e.CIDRs {
		if n, err := normalizeCIDR(s); err != nil {
			add(d.errf(p.with("cidrs", j), "%v", err))
		} else {
			e.CIDRs[j] = n
		}
	}
	if e.Live != "" {
		if n, err := NormalizePattern(e.Live, false); err != nil {
			add(d.errf(p.with("live"), "%v", err))
		} else {
			e.Live = n
		}
	}
	validatePorts(d, p.with("ports"), e.Ports, add)
	if e.Sink && e.Sandbox == nil && e.Live == "" && len(e.CIDRs) == 0 && len(e.Ports) == 0 {
		add(d.errf(p.with("sink"), "a sink endpoint needs ports (e.g. [25, 465, 587])"))
	}
	if e.Requests != nil && (e.Live == "" || e.Sandbox != nil || e.Sink) {
		add(d.errf(p.with("requests"), "request rules need a live host and replace the endpoint's sandbox or sink (set one or the other)"))
	}
	if e.Sandbox != nil {
		validateTarget(d, p.with("sandbox"), e.Sandbox, false, add)
		if e.Sink {
			add(d.errf(p.with("sink"), "an endpoint has either a sandbox or sink: true, not both"))
		}
	}
}

func validateException(d *doc, p path, x *Exception, ids map[string]int, i int, add func(error)) {
	switch {
	case x.ID == "":
		add(d.errf(p.with("id"), "exception id is required"))
	case !exceptionIDRe.MatchString(x.ID):
		add(d.errf(p.with("id"), "bad exception id %q (letters, digits, '.', '_', '-')", x.ID))
	default:
		if j, dup := ids[x.ID]; dup {
			add(d.errf(p.with("id"), "duplicate exception id %q (first at line %d)", x.ID, d.line(path{"exceptions", j, "id"})))
		} else {
			ids[x.ID] = i
		}
	}
	if x.Workload.IsZero() {
		add(d.errf(p.with("workload"), "workload selector is empty: it would exempt every non-production workload; set environment, name, namespace or labels"))
	}
	x.Workload.Environment = strings.ToLower(x.Workload.Environment)
	if len(x.Hosts) == 0 && len(x.CIDRs) == 0 {
		add(d.errf(p, "exception %q allows nothing: set hosts or cidrs", x.ID))
	}
	for j, h := range x.Hosts {
		if n, err := NormalizePattern(h, true); err != nil {
			add(d.errf(p.with("hosts", j), "%v", err))
		} else {
			x.Hosts[j] = n
		}
	}
	for j, s := range x.CIDRs {
		if n, err := normalizeCIDR(s); err != nil {
			add(d.errf(p.with("cidrs", j), "%v", err))
		} else {
			x.CIDRs[j] = n
		}
	}
	validatePorts(d, p.with("ports"), x.Ports, add)
	if x.Owner == "" {
		add(d.errf(p.with("owner"), "owner is required (who answers for this exception)"))
	}
	if x.Ticket == "" {
		add(d.errf(p.with("ticket"), "ticket is required (where it was approved)"))
	}
	switch {
	case x.Expires.Raw == "":
		add(d.errf(p.with("expires"), "expires is required (YYYY-MM-DD): exceptions are time-boxed"))
	case !x.Expires.Valid():
		add(d.errf(p.with("expires"), "bad date %q (want YYYY-MM-DD)", x.Expires.Raw))
	}
}

// accountPlaceholder is replaced by each provider account in request rules
// with for_each_account.
const accountPlaceholder = "{account}"

// validateRequests checks request-level rules with the plan's own checks
// (plan.CheckRequestRule), naming the rule's line.
func validateRequests(d *doc, p path, rq *RequestRules, add func(error)) {
	ids := map[string]int{}
	for k := range rq.Rules {
		r := &rq.Rules[k]
		rp := p.with("rules", k)
		switch {
		case r.ID == "":
			add(d.errf(rp.with("id"), "request rule id is required"))
		case !exceptionIDRe.MatchString(r.ID):
			add(d.errf(rp.with("id"), "bad request rule id %q (letters, digits, '.', '_', '-')", r.ID))
		default:
			if j, dup := ids[r.ID]; dup {
				add(d.errf(rp.with("id"), "duplicate request rule id %q (first at line %d)", r.ID, d.line(p.with("rules", j, "id"))))
			}
			ids[r.ID] = k
		}
		for j, m := range r.Methods {
			r.Methods[j] = strings.ToUpper(m)
		}
		for j := range r.Headers {
			r.Headers[j].Name = strings.ToLower(r.Headers[j].Name)
		}
		if r.Sandbox != nil {
			validateTarget(d, rp.with("sandbox"), r.Sandbox, false, add)
		}
		if pr, err := r.planRule("ACCOUNT"); err != nil {
			add(d.errf(rp.with("action"), "%v", err))
		} else if err := plan.CheckRequestRule(&pr); err != nil {
			add(d.errf(rp, "%v", err))
		}
		if uses := r.usesAccount(); uses != r.ForEachAccount {
			add(d.errf(rp, "%q is replaced only in rules with for_each_account, and such a rule must use it", accountPlaceholder))
		}
	}
	if df := rq.Default; df != nil {
		switch df.Action {
		case "", "allow", "deny":
		default:
			add(d.errf(p.with("default", "action"), "%q: want allow or deny", df.Action))
		}
	}
}

// planRule is the plan form of r with account substituted (what the policy
// emits; used to validate it).
func (r *RequestRule) planRule(account string) (plan.RequestRule, error) {
	a, err := plan.ParseAction(r.Action)
	if err != nil {
		return plan.RequestRule{}, err
	}
	out := plan.RequestRule{ID: r.ID, Methods: r.Methods, Action: a, Reason: r.Reason, Credential: r.Credential, Path: r.Path.plan(account)}
	if r.Sandbox != nil {
		out.Redirect = &plan.Redirect{Host: r.Sandbox.Host, Port: r.Sandbox.Port, TLS: r.Sandbox.TLS}
	}
	for _, h := range r.Headers {
		out.Headers = append(out.Headers, plan.HeaderMatch{Name: h.Name, Value: h.Value.plan(account), BasicUser: h.BasicUser.plan(account), Absent: h.Absent})
	}
	return out, nil
}

func (m *StringMatch) plan(account string) *plan.StringMatch {
	if m == nil {
		return nil
	}
	sub := func(s string) string { return strings.ReplaceAll(s, accountPlaceholder, account) }
	return &plan.StringMatch{Exact: sub(m.Exact), Prefix: sub(m.Prefix), Regex: sub(m.Regex), IgnoreCase: m.IgnoreCase}
}

func (r *RequestRule) usesAccount() bool {
	var ms []*StringMatch
	ms = append(ms, r.Path)
	for _, h := range r.Headers {
		ms = append(ms, h.Value, h.BasicUser)
	}
	for _, m := range ms {
		if m != nil && strings.Contains(m.Exact+m.Prefix+m.Regex, accountPlaceholder) {
			return true
		}
	}
	return false
}
