// Package policy loads the operator's catalog of production (YAML) and the
// Rego policy that reads it, evaluates the policy once per workload class and
// per policy version, and hands enforcers an immutable plan.Plan per class.
//
// See README.md in this directory for the catalog schema, the Rego contract
// (including the shared rule-set extension) and how reloads behave.
package policy

import (
	"fmt"
	"net/netip"
	"time"
)

// Catalog is the operator's description of production: the data the Rego
// policy reads as data.catalog. The YAML schema is strict: unknown fields are
// rejected with the file, line and field named.
type Catalog struct {
	Environments *Environments `yaml:"environments,omitempty" json:"environments,omitempty"`
	// Zones are production DNS names: exact ("billing.example.com") or
	// wildcard suffixes ("*.prod.example.com", strict subdomains only).
	Zones []string `yaml:"zones,omitempty" json:"zones,omitempty"`
	// CIDRs are production networks.
	CIDRs []string `yaml:"cidrs,omitempty" json:"cidrs,omitempty"`
	// NAT64 are the cluster's own NAT64 prefixes (RFC 6052 lengths /32,
	// /40, /48, /56, /64 or /96): an IPv6 address in one of them is decided
	// as the IPv4 address it embeds. The well-known 64:ff9b::/96 and the
	// local-use 64:ff9b:1::/48 need not be listed.
	NAT64 []string `yaml:"nat64,omitempty" json:"nat64,omitempty"`
	// UnnamedTLS ("allow" or "deny") decides, for guarded workloads, TLS
	// connections without a usable server name (no SNI, or one ending in a
	// dot) to an address no CIDR rule names; empty keeps the plan's
	// default. Set it to deny so that a client cannot withhold or mangle its
	// SNI to reach a production host outside the catalog's CIDRs.
	UnnamedTLS string `yaml:"unnamed_tls,omitempty" json:"unnamed_tls,omitempty"`
	// RequestRulesFallback ("deny", the default, or "allow") is what
	// classes without the egressguard sidecar get for hosts with request
	// rules: DNS and the connection cannot see requests.
	RequestRulesFallback string `yaml:"request_rules_fallback,omitempty" json:"request_rules_fallback,omitempty"`
	// MailSink receives non-production mail for sink endpoints.
	MailSink     *Target        `yaml:"mail_sink,omitempty" json:"mail_sink,omitempty"`
	Providers    []Provider     `yaml:"providers,omitempty" json:"providers,omitempty"`
	Cloud        *Cloud         `yaml:"cloud,omitempty" json:"cloud,omitempty"`
	JWT          *JWTIdentities `yaml:"jwt,omitempty" json:"jwt,omitempty"`
	Fingerprints []Fingerprint  `yaml:"fingerprints,omitempty" json:"fingerprints,omitempty"`
	Exceptions   []Exception    `yaml:"exceptions,omitempty" json:"exceptions,omitempty"`
	// HostNetworkOptOuts admit host-network pods into enforced namespaces
	// (see optouts.go).
	HostNetworkOptOuts []HostNetworkOptOut `yaml:"host_network_opt_outs,omitempty" json:"host_network_opt_outs,omitempty"`
}

// NAT64Prefixes returns the parsed NAT64 list of a validated catalog.
func (c *Catalog) NAT64Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(c.NAT64))
	for _, s := range c.NAT64 {
		out = append(out, netip.MustParsePrefix(s)) // validated by ParseCatalog
	}
	return out
}

// Environments classifies workload environments. An environment in neither
// list is guarded like a non-production one (fail closed).
type Environments struct {
	// Production environments may reach everything.
	Production []string `yaml:"production,omitempty" json:"production,omitempty"`
	// NonProduction environments are guarded.
	NonProduction []string `yaml:"non_production,omitempty" json:"non_production,omitempty"`
	// Report lists guarded environments whose plans run in report mode:
	// nothing is blocked, would-be denials are recorded (rollout aid).
	Report []string `yaml:"report,omitempty" json:"report,omitempty"`
}

// Target is a host and port to send traffic to instead (a sandbox or the
// mail sink).
type Target struct {
	Host string `yaml:"host" json:"host"`
	Port uint16 `yaml:"port,omitempty" json:"port,omitempty"`
	TLS  bool   `yaml:"tls,omitempty" json:"tls,omitempty"`
}

// String renders host:port.
func (t Target) String() string {
	if t.Port == 0 {
		return t.Host
	}
	return fmt.Sprintf("%s:%d", t.Host, t.Port)
}

// Provider is a third-party service with live endpoints that non-production
// workloads must not reach (payment, email, SMS, ...).
type Provider struct {
	// Name is unique within one file; a later file with the same name
	// replaces the provider entirely.
	Name     string `yaml:"name" json:"name"`
	Category string `yaml:"category,omitempty" json:"category,omitempty"`
	Docs     string `yaml:"docs,omitempty" json:"docs,omitempty"`
	Note     string `yaml:"note,omitempty" json:"note,omitempty"`
	// Disabled removes the provider (and any earlier one of the same name)
	// from the merged catalog. It is still validated.
	Disabled  bool       `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	Endpoints []Endpoint `yaml:"endpoints,omitempty" json:"endpoints,omitempty"`
	// Accounts are the provider's production account identifiers (Twilio
	// account SIDs, ...): secrets-scan flags credentials that name them,
	// and request rules with for_each_account are stated once per account.
	Accounts []string `yaml:"accounts,omitempty" json:"accounts,omitempty"`
	// Requests are request-level rules for every endpoint with a live host
	// and no sandbox, sink, port filter or requests of its own.
	Requests *RequestRules `yaml:"requests,omitempty" json:"requests,omitempty"`
}

// RequestRules make an endpoint's live host an interception host: for
// workloads with the egressguard sidecar, TLS is terminated with the staging
// CA and each HTTP request is decided by the first rule that matches, else
// by Default (deny unless it says otherwise). Workloads without the sidecar
// get the catalog's request_rules_fallback for the host instead.
type RequestRules struct {
	Rules   []RequestRule   `yaml:"rules,omitempty" json:"rules,omitempty"`
	Default *RequestDefault `yaml:"default,omitempty" json:"default,omitempty"`
}

// RequestRule is one request-level rule of the catalog (plan.RequestRule
// once the policy has emitted it).
type RequestRule struct {
	// ID is unique within the endpoint's rules.
	ID string `yaml:"id" json:"id"`
	// Methods, any of (case-insensitive here, upper-case in the plan).
	Methods []string `yaml:"methods,omitempty" json:"methods,omitempty"`
	// Path matches the normalised request path, without the query.
	Path *StringMatch `yaml:"path,omitempty" json:"path,omitempty"`
	// Headers must all hold.
	Headers []HeaderMatch `yaml:"headers,omitempty" json:"headers,omitempty"`
	// Action is allow, deny or redirect (with Sandbox).
	Action  string  `yaml:"action" json:"action"`
	Sandbox *Target `yaml:"sandbox,omitempty" json:"sandbox,omitempty"`
	Reason  string  `yaml:"reason,omitempty" json:"reason,omitempty"`
	// Credential names the kind of credential the rule recognises; records
	// carry it and a fingerprint, never the value.
	Credential string `yaml:"credential,omitempty" json:"credential,omitempty"`
	// ForEachAccount states the rule once per provider account, with
	// "{account}" in its matches and reason replaced by the account (no
	// accounts: no rule).
	ForEachAccount bool `yaml:"for_each_account,omitempty" json:"for_each_account,omitempty"`
}

// RequestDefault is the action when no request rule matches.
type RequestDefault struct {
	Action string `yaml:"action,omitempty" json:"action,omitempty"`
	Reason string `yaml:"reason,omitempty" json:"reason,omitempty"`
}

// HeaderMatch is a condition on one request header (plan.HeaderMatch).
type HeaderMatch struct {
	// Name is matched case-insensitively (lower-cased here).
	Name  string       `yaml:"name" json:"name"`
	Value *StringMatch `yaml:"value,omitempty" json:"value,omitempty"`
	// BasicUser matches the decoded user of "Authorization: Basic".
	BasicUser *StringMatch `yaml:"basic_user,omitempty" json:"basic_user,omitempty"`
	Absent    bool         `yaml:"absent,omitempty" json:"absent,omitempty"`
}

// StringMatch is exactly one of exact, prefix or regex (RE2, whole value)
// (plan.StringMatch).
type StringMatch struct {
	Exact      string `yaml:"exact,omitempty" json:"exact,omitempty"`
	Prefix     string `yaml:"prefix,omitempty" json:"prefix,omitempty"`
	Regex      string `yaml:"regex,omitempty" json:"regex,omitempty"`
	IgnoreCase bool   `yaml:"ignore_case,omitempty" json:"ignore_case,omitempty"`
}

// Endpoint is one live host pattern of a provider, its addresses (CIDRs),
// or, with neither, a set of ports that is matched for every destination.
type Endpoint struct {
	Live string `yaml:"live,omitempty" json:"live,omitempty"`
	// CIDRs are the endpoint's addresses, matched when a connection names
	// no host a rule holds (IP literals, TLS without SNI or with another
	// one); with no Live host the endpoint is addresses only.
	CIDRs   []string `yaml:"cidrs,omitempty" json:"cidrs,omitempty"`
	Ports   []uint16 `yaml:"ports,omitempty" json:"ports,omitempty"`
	Sandbox *Target  `yaml:"sandbox,omitempty" json:"sandbox,omitempty"`
	// Sink sends matching traffic to the catalog's mail sink (deny when none
	// is configured).
	Sink bool `yaml:"sink,omitempty" json:"sink,omitempty"`
	// Requests are request-level rules for the live host (see
	// RequestRules); they replace the provider's.
	Requests *RequestRules `yaml:"requests,omitempty" json:"requests,omitempty"`
}

// Cloud lists production cloud accounts (used by the secrets scanner).
// JWTIdentities are the production token issuers and audiences: a JWT in
// staging configuration whose iss or aud is one of them is a production
// credential (secrets-scan).
type JWTIdentities struct {
	Issuers   []string `yaml:"issuers,omitempty" json:"issuers,omitempty"`
	Audiences []string `yaml:"audiences,omitempty" json:"audiences,omitempty"`
}

type Cloud struct {
	AWSAccounts        []string `yaml:"aws_accounts,omitempty" json:"aws_accounts,omitempty"`
	GCPProjects        []string `yaml:"gcp_projects,omitempty" json:"gcp_projects,omitempty"`
	AzureSubscriptions []string `yaml:"azure_subscriptions,omitempty" json:"azure_subscriptions,omitempty"`
}

// Fingerprint is a set of salted hashes of production secret values:
// hex(sha256(salt || value)) with the salt base64-decoded.
type Fingerprint struct {
	Algorithm string   `yaml:"algorithm" json:"algorithm"`
	Salt      string   `yaml:"salt" json:"salt"`
	Values    []string `yaml:"values,omitempty" json:"values,omitempty"`
	Source    string   `yaml:"source,omitempty" json:"source,omitempty"`
}

// Exception lets selected non-production workloads reach some production
// hosts or networks until it expires.
type Exception struct {
	ID       string   `yaml:"id" json:"id"`
	Workload Selector `yaml:"workload" json:"workload"`
	Hosts    []string `yaml:"hosts,omitempty" json:"hosts,omitempty"`
	CIDRs    []string `yaml:"cidrs,omitempty" json:"cidrs,omitempty"`
	Ports    []uint16 `yaml:"ports,omitempty" json:"ports,omitempty"`
	// Expires is the last day (UTC) on which the exception applies.
	Expires Date   `yaml:"expires" json:"expires"`
	Owner   string `yaml:"owner" json:"owner"`
	Ticket  string `yaml:"ticket" json:"ticket"`
	Reason  string `yaml:"reason,omitempty" json:"reason,omitempty"`
}

// Selector picks workloads: every field that is set must match.
type Selector struct {
	Environment string            `yaml:"environment,omitempty" json:"environment,omitempty"`
	Name        string            `yaml:"name,omitempty" json:"name,omitempty"`
	Namespace   string            `yaml:"namespace,omitempty" json:"namespace,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
}

// IsZero reports whether the selector has no constraint at all.
func (s Selector) IsZero() bool {
	return s.Environment == "" && s.Name == "" && s.Namespace == "" && len(s.Labels) == 0
}

// dateLayout is the only accepted date format (YAML and JSON).
const dateLayout = "2006-01-02"

// Date is a calendar day, written YYYY-MM-DD.
type Date struct {
	// Raw is the text as written; it is kept so a bad date can be reported
	// by Validate with its position instead of failing the decode.
	Raw string
	t   time.Time
	ok  bool
}

// ParseDate parses YYYY-MM-DD.
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(dateLayout, s)
	if err != nil {
		return Date{Raw: s}, fmt.Errorf("bad date %q (want YYYY-MM-DD)", s)
	}
	return Date{Raw: s, t: t, ok: true}, nil
}

// Valid reports whether the date parsed.
func (d Date) Valid() bool { return d.ok }

// Time is the start of the day, UTC.
func (d Date) Time() time.Time { return d.t }

// String returns the date as written.
func (d Date) String() string { return d.Raw }

// ExpiredAt reports whether the day is over at now: an exception that
// "expires 2026-12-31" still applies on that day (UTC) and not after.
func (d Date) ExpiredAt(now time.Time) bool {
	return !d.ok || !now.Before(d.t.AddDate(0, 0, 1))
}

// UnmarshalText accepts any text; validity is checked by Validate so that the
// error can name file, line and field.
func (d *Date) UnmarshalText(b []byte) error {
	v, _ := ParseDate(string(b))
	*d = v
	return nil
}

// MarshalText writes the date as written.
func (d Date) MarshalText() ([]byte, error) { return []byte(d.Raw), nil }
