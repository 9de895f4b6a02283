// Package plan holds the compiled, immutable form of one workload class's
// egress rules and the matcher that decides a destination against them.
//
// It has no OPA dependency: the policy package evaluates Rego once per
// workload class and hands the resulting Spec to Compile (or New, with a
// shared base Layer); enforcers (xds, dnsguard, explain) only ever call
// Decide.
//
// # Matching semantics (the one place they are defined)
//
//   - Host names are matched case-insensitively, a trailing dot is ignored and
//     internationalised names are compared in their punycode (IDNA) form.
//   - A host pattern is an exact name ("api.stripe.com"), a wildcard suffix
//     ("*.stripe.com", which matches strict subdomains only, not
//     "stripe.com" itself) or "*" (every name).
//   - The most specific host pattern wins: an exact name beats any wildcard, a
//     longer wildcard suffix beats a shorter one, "*" comes last.
//   - IP addresses are matched against CIDRs by longest prefix. An IPv6
//     address that embeds an IPv4 address (mapped, compatible, NAT64 with
//     the well-known, local-use or the catalog's own prefixes, 6to4; see
//     EmbeddedIPv4) is matched as that IPv4 address first, and as itself
//     only when no CIDR rule holds the IPv4 address. Addresses given as text
//     go through ParseAddr (every inet_aton spelling of IPv4).
//   - When a destination has a host name, host rules are consulted first; CIDR
//     rules apply only when no host rule matches (or the destination has no
//     name, as for IP literals and raw TCP).
//   - A rule with a port filter matches only destinations whose port is known
//     (non-zero) and listed. Where both apply to the same pattern, a rule whose
//     port filter matches beats a rule without a port filter. DNS does not know
//     ports, so port-filtered rules are enforced by the sidecar, except
//     DNS-held ones (port filters naming only NameBlindPorts, such as SMTP):
//     a DNS lookup (port 0, Protocol "dns") sees them as if on their port.
//   - A destination is decided in normal form: a host that ends in a number
//     is an address (ParseAddr; refused when malformed), decided as the
//     destination address when none is given (a connection's own address
//     wins over the text); a name that cannot
//     be put in canonical form is decided by the wildcard patterns over its
//     longest canonical suffix, and refused (MalformedRuleID) when none
//     holds it; never by the default.
//   - A plan is a shared base Layer plus a small per-class overlay. The most
//     specific pattern wins across both; on the very same pattern (and port
//     filter) the overlay wins. Within one layer the earlier rule wins.
//   - A rule in report mode (or any rule of a plan in report mode) answers
//     allow and sets Decision.WouldDeny when it would have denied or
//     redirected.
//   - When nothing matches, the plan's default action applies, through a
//     synthetic rule whose ID is DefaultRuleID.
package plan

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
)

// Action is what an enforcer does with a destination.
type Action uint8

const (
	// ActionAllow passes the connection or lookup through untouched.
	ActionAllow Action = iota
	// ActionDeny refuses it with an explanation.
	ActionDeny
	// ActionRedirect sends it to the rule's sandbox target instead.
	ActionRedirect
)

var actionNames = [...]string{ActionAllow: "allow", ActionDeny: "deny", ActionRedirect: "redirect"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// ParseAction parses "allow", "deny" or "redirect".
func ParseAction(s string) (Action, error) {
	for i, n := range actionNames {
		if n == s {
			return Action(i), nil
		}
	}
	return 0, fmt.Errorf("unknown action %q (want allow, deny or redirect)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (a Action) MarshalText() ([]byte, error) {
	if int(a) >= len(actionNames) {
		return nil, fmt.Errorf("unknown action %d", uint8(a))
	}
	return []byte(a.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Action) UnmarshalText(b []byte) error {
	v, err := ParseAction(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// Mode says whether a rule is enforced or only reported.
type Mode uint8

const (
	// ModeEnforce applies the rule's action.
	ModeEnforce Mode = iota
	// ModeReport answers allow and records what would have happened.
	ModeReport
)

func (m Mode) String() string {
	switch m {
	case ModeEnforce:
		return "enforce"
	case ModeReport:
		return "report"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode parses "enforce" (or "") and "report".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "enforce":
		return ModeEnforce, nil
	case "report":
		return ModeReport, nil
	}
	return 0, fmt.Errorf("unknown mode %q (want enforce or report)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (m Mode) MarshalText() ([]byte, error) {
	if m > ModeReport {
		return nil, fmt.Errorf("unknown mode %d", uint8(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Redirect is a sandbox target.
type Redirect struct {
	Host string `json:"host"`
	Port uint16 `json:"port,omitempty"`
	TLS  bool   `json:"tls,omitempty"`
}

// Rule is one entry of a plan, in the shape data.egressguard.plan yields.
type Rule struct {
	ID       string    `json:"id"`
	Hosts    []string  `json:"hosts,omitempty"`
	CIDRs    []string  `json:"cidrs,omitempty"`
	Ports    []uint16  `json:"ports,omitempty"`
	Action   Action    `json:"action"`
	Redirect *Redirect `json:"redirect,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Mode     Mode      `json:"mode,omitempty"`
	// Category is informational (payment, email, production-zone, ...): it
	// is carried to decision records and Envoy stats, never matched on.
	Category string `json:"category,omitempty"`
	// Requests makes a host rule an interception rule: the sidecar
	// terminates TLS for Hosts with a leaf minted by the staging CA and
	// decides each HTTP request with DecideRequest (request.go).
	// Connection-level enforcers (DNS, Decide) see the rule's Action, which
	// the policy sets to allow for classes with a sidecar; classes without
	// one never get Requests (the policy emits the catalog's fallback action
	// for them instead).
	Requests *RequestPolicy `json:"requests,omitempty"`
}

// Spec is the uncompiled form of a whole plan: what the Rego contract
// data.egressguard.plan yields for one workload class.
type Spec struct {
	Default Action `json:"default"`
	Mode    Mode   `json:"mode,omitempty"`
	Rules   []Rule `json:"rules"`
	// NAT64 are the cluster's own NAT64 prefixes (see Plan.NAT64).
	NAT64 []string `json:"nat64,omitempty"`
}

// Destination is what a workload is trying to reach. Zero values mean
// unknown: Host "" (IP literal or raw TCP), Port 0 (DNS), IP invalid.
type Destination struct {
	Host     string
	Port     uint16
	IP       netip.Addr
	Protocol string
}

// DefaultRuleID is the ID of the synthetic rule a plan's default comes from.
const DefaultRuleID = "default"

// MalformedRuleID is the ID of the synthetic deny rule for destinations that
// cannot be put in normal form (see Plan.Decide).
const MalformedRuleID = "malformed-destination"

// ProtocolDNS is the Destination.Protocol of a DNS lookup: with port 0 it
// makes DNS-held rules apply (see DNSHeld).
const ProtocolDNS = "dns"

// NameBlindPorts are the ports of protocols that show the sidecar no server
// name: server-first protocols, where the server speaks before the client
// could name it (SMTP 25, submission 587, 2525 and Amazon SES's 2587 with
// STARTTLS; POP3 110, IMAP 143, FTP 21, SSH 22, Telnet 23, MySQL 3306), and
// protocols that negotiate TLS after plaintext or never carry a name
// (PostgreSQL 5432, Redis 6379). A host rule filtered to such ports cannot
// be matched by name at the sidecar, so DNS decides it (DNSHeld).
var NameBlindPorts = []uint16{21, 22, 23, 25, 110, 143, 587, 2525, 2587, 3306, 5432, 6379}

// ImplicitTLSCompanionPorts are the implicit-TLS ports of the same mail
// protocols (SMTPS 465 and SES's 2465, IMAPS 993, POP3S 995). The sidecar
// sees their SNI, but a mail provider's rule lists them beside the
// name-blind ones; they do not keep such a rule from being DNS-held.
var ImplicitTLSCompanionPorts = []uint16{465, 993, 995, 2465}

// IsNameBlindPort reports whether port is one of NameBlindPorts.
func IsNameBlindPort(port uint16) bool { return slices.Contains(NameBlindPorts, port) }

// DNSHeld reports whether DNS decides r's host patterns: r's port filter
// names at least one name-blind port (NameBlindPorts) and otherwise only
// ImplicitTLSCompanionPorts. At a DNS lookup (port 0, Protocol ProtocolDNS)
// such a rule applies to its host patterns, except "*", as a port-specific
// rule would on its port: a name whose mail endpoint is redirected to the
// mail sink is answered with the sink. The pattern "*" (every name on those
// ports) stays with the sidecar's port match.
func DNSHeld(r *Rule) bool {
	blind := false
	for _, p := range r.Ports {
		switch {
		case IsNameBlindPort(p):
			blind = true
		case !slices.Contains(ImplicitTLSCompanionPorts, p):
			return false
		}
	}
	return blind
}

// Enforcement point names (EnforcedBy).
const (
	EnforcedBySidecar = "sidecar"
	EnforcedByDNS     = "dns"
)

// EnforcedBy names the enforcement points that hold a rule, each with what
// it matches: DNS decides host rules without a port filter and DNS-held
// rules (by name), and checks answer addresses against CIDR rules without a
// port filter; the sidecar matches host rules by SNI or Host except
// DNS-held ones (server-first protocols show it no name), and CIDR rules by
// destination address.
func EnforcedBy(r *Rule) []string {
	var out []string
	named := slices.ContainsFunc(r.Hosts, func(h string) bool { return h != "*" })
	switch {
	case named && (len(r.Ports) == 0 || DNSHeld(r)):
		out = append(out, EnforcedByDNS+" (name)")
	}
	if len(r.CIDRs) > 0 && len(r.Ports) == 0 {
		out = append(out, EnforcedByDNS+" (answer addresses)")
	}
	if len(r.Hosts) > 0 && !DNSHeld(r) || slices.Contains(r.Hosts, "*") {
		out = append(out, EnforcedBySidecar+" (SNI/Host)")
	}
	if len(r.CIDRs) > 0 {
		out = append(out, EnforcedBySidecar+" (destination address)")
	}
	return out
}

// Decision is the outcome of Plan.Decide.
type Decision struct {
	// Action is what the enforcer must do (allow for report-mode rules).
	Action Action
	// Matched is the matched rule's own action, before report mode.
	Matched Action
	// Rule is the rule that decided; never nil (DefaultRuleID when nothing
	// matched). It points into the immutable plan: do not modify it.
	Rule *Rule
	// WouldDeny is set when a report-mode rule would have denied or
	// redirected.
	WouldDeny bool
}

// RuleID is the deciding rule's ID.
func (d Decision) RuleID() string { return d.Rule.ID }

// Reason is the deciding rule's reason.
func (d Decision) Reason() string { return d.Rule.Reason }

// Target is the sandbox target of a redirect decision, nil otherwise.
func (d Decision) Target() *Redirect {
	if d.Action != ActionRedirect {
		return nil
	}
	return d.Rule.Redirect
}

// MarshalJSON renders a decision for decision records and `policy eval -o json`.
func (d Decision) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Action    Action    `json:"action"`
		Matched   Action    `json:"matched_action"`
		Rule      string    `json:"rule"`
		Reason    string    `json:"reason,omitempty"`
		Category  string    `json:"category,omitempty"`
		Redirect  *Redirect `json:"redirect,omitempty"`
		WouldDeny bool      `json:"would_deny,omitempty"`
	}{d.Action, d.Matched, d.RuleID(), d.Reason(), d.Rule.Category, d.Target(), d.WouldDeny})
}
