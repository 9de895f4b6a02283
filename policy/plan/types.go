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
//     ports, so port-filtered rules are enforced by the sidecar only.
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
