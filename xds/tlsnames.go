package xds

import (
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/egressguard/egressguard/policy/plan"
)

// tlsKind is a verdict's class on TLS: a redirect cannot be honoured
// without terminating TLS, so it is a deny.
func tlsKind(v verdict) verdictKind {
	if v.kind == vRedirect {
		return vDeny
	}
	return v.kind
}

// tlsGuard denies, in front of a TLS fallback chain's own verdict, the
// connections of one side: those without a usable server name (unnamed)
// or those with one. A zero tlsGuard adds nothing.
type tlsGuard struct {
	rule    *plan.Rule
	unnamed bool
}

// tlsFallback splits a TLS fallback chain's two verdicts, for named
// (unlisted) and unnamed connections, into the verdict its TCP proxy
// applies and a guard denying the side that must be denied. Where neither
// or both deny, there is no guard; allow and report (which both pass
// through) give report, so a would-deny is never lost.
func tlsFallback(named, unnamed verdict) (verdict, tlsGuard) {
	named.kind, unnamed.kind = tlsKind(named), tlsKind(unnamed)
	switch {
	case named.kind == vDeny && unnamed.kind != vDeny:
		return unnamed, tlsGuard{rule: named.rule}
	case unnamed.kind == vDeny && named.kind != vDeny:
		return named, tlsGuard{rule: unnamed.rule, unnamed: true}
	case named.strictness() > unnamed.strictness():
		return named, tlsGuard{}
	}
	return unnamed, tlsGuard{}
}

// filters is the guard's network RBAC filter (none for a zero guard). Its
// permission reads the requested server name (Envoy's
// Permission.requested_server_name: empty when the client sent no SNI).
func (g tlsGuard) filters(chain string) []*listenerv3.Filter {
	if g.rule == nil {
		return nil
	}
	perm := unnamedSNI()
	policy := "named-tls:" + g.rule.ID
	if g.unnamed {
		policy = "unnamed-tls:" + g.rule.ID
	} else {
		perm = &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: perm}}
	}
	return []*listenerv3.Filter{networkFilter("envoy.filters.network.rbac", &netrbacv3.RBAC{
		StatPrefix: statPrefix("egressguard_deny", chain) + ".",
		Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{policy: {
			Permissions: []*rbacv3.Permission{perm},
			Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
		}}},
	})}
}

// numericHost matches, as an RE2 full match (Envoy's safe_regex), a
// server name or Host that is an address rather than a name: its last
// label a number (decimal or 0x hex), as plan.Decide reads it, or an IPv6
// literal (a colon).
const numericHost = `(?i)(?:.*\.)?(?:[0-9]+|0x[0-9a-f]*)\.?|.*:.*`

// malformedSNI matches a server name with a byte neither a host name nor
// an address literal has (Envoy lowercases the name): non-ASCII included,
// since an SNI on the wire is an A-label. Such a name cannot be put in
// canonical form; unless a listed wildcard holds it (then its chain
// decides), it is refused.
const malformedSNI = `.*[^a-z0-9._:\[\]-].*`

func regexMatcher(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

// unnamedSNI matches a connection without a usable server name: none, one
// ending in a dot, or an address (numericHost).
func unnamedSNI() *rbacv3.Permission {
	sni := func(m *matcherv3.StringMatcher) *rbacv3.Permission {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: m}}
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: []*rbacv3.Permission{
		sni(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: ""}}),
		sni(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: "."}}),
		sni(regexMatcher(numericHost)),
	}}}}
}

// malformedGuard denies, in front of a TLS fallback chain, a server name
// that cannot be put in canonical form (plan.MalformedRuleID).
func malformedGuard(chain string) *listenerv3.Filter {
	return networkFilter("envoy.filters.network.rbac", &netrbacv3.RBAC{
		StatPrefix: statPrefix("egressguard_deny", chain) + ".malformed.",
		Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{"malformed-tls:" + plan.MalformedRuleID: {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: regexMatcher(malformedSNI)}}},
			Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
		}}},
	})
}
