# The default egressguard policy. It reads the merged catalog from
# data.catalog (see policy/README.md) and answers four questions:
#
#   data.egressguard.plan        for input.workload: which rules apply to it.
#   data.egressguard.rulesets    no input: catalog-wide rule sets, evaluated
#                                once per policy version and shared.
#   data.egressguard.class_labels / class_fields
#                                no input: which workload labels (and name /
#                                namespace) the policy reads; the engine keys
#                                its plan cache on the environment plus these.
#   data.egressguard.decision    for input.workload + input.destination: the
#                                reference answer, with the matching semantics
#                                of policy/plan written in Rego (tests only).
#   data.egressguard.request_decision
#                                the same plus input.request: the reference
#                                answer of plan.DecideRequest (tests only).
#
# Contract of plan (the DESIGN contract plus the shared-rule-set extension):
#
#   {
#     "default": "allow" | "deny",
#     "mode": "enforce" | "report",        # optional, whole plan
#     "include": [ruleset names],          # optional: compiled, in this order,
#                                          # into one shared base layer
#     "overlay_include": [ruleset names],  # optional: their rules start the
#                                          # class overlay, in this order
#     "rules": [rule, ...]                 # class-specific overlay rules, last
#   }
#
# A rule is {id, hosts, cidrs, ports, action, redirect: {host, port, tls},
# reason, mode, category, requests: {rules, default}}. On the very same pattern an overlay rule beats a
# base rule; within one layer the earlier rule wins.
package egressguard

catalog := data.catalog

# ---------------------------------------------------------------- environments

production_envs := {lower(e) | some e in object.get(catalog, ["environments", "production"], [])}

report_envs := {lower(e) | some e in object.get(catalog, ["environments", "report"], [])}

workload := object.get(input, "workload", {})

workload_env := lower(object.get(workload, "environment", ""))

# An environment that is not listed as production is guarded (fail closed).
production if workload_env in production_envs

# Whether the workload runs the egressguard sidecar, which can decide each
# HTTP request of an intercepted host (part of the workload class).
workload_sidecar if object.get(workload, "sidecar", false) == true

# -------------------------------------------------------------------- the plan

plan := {"default": "allow", "mode": "enforce", "rules": []} if production

plan := {
	"default": "allow",
	"mode": guarded_mode,
	"include": [catalog_ruleset],
	"overlay_include": [exception_ruleset_name(x) | some x in matching_exceptions],
	"rules": [],
	"unnamed_tls": object.get(catalog, "unnamed_tls", ""),
} if not production

guarded_mode := "report" if workload_env in report_envs

else := "enforce"

# Exceptions whose workload selector matches, in catalog order. Expired ones
# were dropped by the engine before the catalog reached data.
#
# Only candidates are checked: the catalog index files each exception under
# one of its selector's keys (a label key and value, the name, the
# namespace, or "other" for environment-only selectors), so a class looks up
# its own labels instead of testing every exception (one class costs a few
# lookups, not a scan of the whole exception list).
matching_exceptions := [x |
	some i in sort(exception_candidates)
	x := catalog.exceptions[i]
	selector_matches(x.workload, workload)
]

exception_index := catalog_index.exceptions

exception_candidates contains i if {
	some k, v in object.get(workload, "labels", {})
	some i in object.get(exception_index, ["by_label", k, v], [])
}

exception_candidates contains i if some i in object.get(exception_index, ["by_name", object.get(workload, "name", "")], [])

exception_candidates contains i if some i in object.get(exception_index, ["by_namespace", object.get(workload, "namespace", "")], [])

exception_candidates contains i if some i in object.get(exception_index, "other", [])

selector_matches(sel, w) if {
	field_matches(lower(object.get(sel, "environment", "")), lower(object.get(w, "environment", "")))
	field_matches(object.get(sel, "name", ""), object.get(w, "name", ""))
	field_matches(object.get(sel, "namespace", ""), object.get(w, "namespace", ""))
	every k, v in object.get(sel, "labels", {}) {
		object.get(w, ["labels", k], null) == v
	}
}

field_matches(want, _) if want == ""

field_matches(want, got) if {
	want != ""
	want == got
}

exception_ruleset_name(x) := concat("", ["exception:", x.id])

# The catalog rule set for the class: with request-level rules when the
# workload has the sidecar, with the catalog's fallback for their hosts
# otherwise.
catalog_ruleset := "catalog:sidecar" if workload_sidecar

else := "catalog"

# ------------------------------------------------------------- workload class

# The label keys the policy reads: exactly those exception selectors use.
class_labels := sort({k | some x in object.get(catalog, "exceptions", []); some k, _ in object.get(x.workload, "labels", {})})

# The workload fields (besides environment) the policy reads.
class_fields := sort({f | some x in object.get(catalog, "exceptions", []); some f in ["name", "namespace"]; object.get(x.workload, f, "") != ""})

# ------------------------------------------------------------------ rule sets

rulesets.catalog := catalog_rules(false)

rulesets["catalog:sidecar"] := catalog_rules(true)

rulesets[name] := exception_rules(x) if {
	some x in object.get(catalog, "exceptions", [])
	name := exception_ruleset_name(x)
}

# Catalog-wide rules for guarded workloads. Order matters only between rules
# on the very same pattern (the earlier wins): provider endpoints (a sandbox
# redirect is more useful than a deny), then production zones, then networks.
catalog_rules(sidecar) := array.concat(array.concat(provider_rules(sidecar), zone_rules), cidr_rules)

provider_rules(sidecar) := [endpoint_rule(p, e, sidecar) | some p in object.get(catalog, "providers", []); some e in object.get(p, "endpoints", [])]

zone_rules := [zone_rule(z) | some z in object.get(catalog, "zones", [])]

cidr_rules := [cidr_rule(c) | some c in object.get(catalog, "cidrs", [])]

# A zone "*.X" is the zone X, apex included (the apex holds the zone's SOA
# and NS records); every other pattern keeps strict wildcard semantics.
zone_rule(z) := {
	"id": concat(":", ["zone", z]),
	"hosts": zone_hosts(z),
	"action": "deny",
	"category": "production-zone",
	"reason": zone_reason(z),
}

zone_hosts(z) := [z, zone_apex(z)] if startswith(z, "*.")

else := [z]

zone_apex(z) := substring(z, 2, -1)

zone_reason(z) := sprintf("%s is a production zone (apex %s included): non-production workloads may not reach production", [z, zone_apex(z)]) if startswith(z, "*.")

else := sprintf("%s is a production zone: non-production workloads may not reach production", [z])

cidr_rule(c) := {
	"id": concat(":", ["cidr", c]),
	"cidrs": [c],
	"action": "deny",
	"category": "production-network",
	"reason": sprintf("%s is a production network: non-production workloads may not reach production", [c]),
}

endpoint_rule(p, e, sidecar) := object.union(
	{
		"id": endpoint_id(p, e),
		"hosts": endpoint_hosts(e),
		"cidrs": endpoint_cidrs(e),
		"ports": endpoint_ports(e),
		"category": object.get(p, "category", "provider"),
	},
	endpoint_action(p, e, sidecar),
)

endpoint_ports(e) := object.get(e, "ports", [])

ports_text(ports) := concat(",", [format_int(n, 10) | some n in ports])

# provider:<name>:<live host, CIDRs or *>[:<ports>]
endpoint_id(p, e) := concat(":", ["provider", p.name, endpoint_live(e)]) if count(endpoint_ports(e)) == 0

else := concat(":", ["provider", p.name, endpoint_live(e), ports_text(endpoint_ports(e))])

endpoint_live(e) := e.live if e.live

else := concat(",", e.cidrs) if lists_cidrs(e)

else := "*"

# A live host is a host rule, an endpoint's CIDRs a CIDR rule; a ports-only
# endpoint matches every destination on those ports, names ("*") and IP
# literals (0.0.0.0/0, ::/0) alike.
endpoint_hosts(e) := [e.live] if e.live

else := [] if lists_cidrs(e)

else := ["*"]

endpoint_cidrs(e) := object.get(e, "cidrs", []) if {
	e.live
} else := e.cidrs if lists_cidrs(e)

else := ["0.0.0.0/0", "::/0"]

# The endpoints whose rules have CIDRs (what catalog.index.ports_only lists).
endpoint_has_cidrs(e) if not e.live

endpoint_has_cidrs(e) if lists_cidrs(e)

# An endpoint that lists CIDRs. (A rule of its own: OPA v1.22.3's formatter
# mangles "else := ... if count(object.get(...)) > 0".)
lists_cidrs(e) if count(object.get(e, "cidrs", [])) > 0

# Where the endpoint is, in words: "api-m.paypal.com", "ports 25,587",
# "smtp.example.com on ports 587".
endpoint_where(e) := e.live if {
	e.live
	count(endpoint_ports(e)) == 0
} else := sprintf("%s on ports %s", [e.live, ports_text(endpoint_ports(e))]) if e.live

else := sprintf("%s on ports %s", [concat(", ", e.cidrs), ports_text(endpoint_ports(e))]) if {
	lists_cidrs(e)
	count(endpoint_ports(e)) > 0
} else := concat(", ", e.cidrs) if lists_cidrs(e)

else := sprintf("ports %s", [ports_text(endpoint_ports(e))])

target_text(t) := sprintf("%s:%d", [t.host, t.port]) if object.get(t, "port", 0) != 0

else := t.host

redirect_of(t) := {"host": t.host, "port": object.get(t, "port", 0), "tls": object.get(t, "tls", false)}

# An endpoint with request rules (its own, or its provider's when it has a
# live host and no sandbox, sink or port filter): for classes with the sidecar
# the host is allowed at the connection level (DNS answers normally) and each
# request is decided by the rules; other classes get the fallback.
endpoint_action(p, e, sidecar) := {
	"action": "allow",
	"requests": request_policy(p, endpoint_requests(p, e)),
	"reason": sprintf("%s live endpoint %s: decided per request by the sidecar (request-level rules)", [p.name, endpoint_where(e)]),
} if {
	sidecar
	endpoint_requests(p, e)
} else := {
	"action": request_fallback,
	"reason": sprintf("%s (%s) live endpoint %s: its request-level rules need the egressguard sidecar, which this workload does not run; the catalog's request_rules_fallback (%s) applies", [p.name, object.get(p, "category", "provider"), endpoint_where(e), request_fallback]),
} if {
	endpoint_requests(p, e)
} else := {
	"action": "redirect",
	"redirect": redirect_of(e.sandbox),
	"reason": sprintf("%s live endpoint %s: non-production workloads must use the %s sandbox %s", [p.name, endpoint_where(e), p.name, target_text(e.sandbox)]),
} if {
	e.sandbox
}

else := {
	"action": "redirect",
	"redirect": redirect_of(catalog.mail_sink),
	"reason": sprintf("%s (%s) %s: non-production mail goes to the mail sink %s", [p.name, object.get(p, "category", "provider"), endpoint_where(e), target_text(catalog.mail_sink)]),
} if {
	e.sink
	catalog.mail_sink
} else := {
	"action": "deny",
	"reason": sprintf("%s (%s) %s: blocked for non-production workloads (no mail_sink is configured in the catalog)", [p.name, object.get(p, "category", "provider"), endpoint_where(e)]),
} if {
	e.sink
}

else := {
	"action": "deny",
	"reason": sprintf("%s %s: an alternate resolver (DNS over HTTPS/TLS) would let a non-production workload skip egressguard's DNS; use the cluster resolver", [p.name, endpoint_where(e)]),
} if {
	object.get(p, "category", "") == "dns-bypass"
}

else := {
	"action": "deny",
	"reason": sprintf("%s (%s) live endpoint %s: blocked for non-production workloads (the provider has no separate sandbox host)", [p.name, object.get(p, "category", "provider"), endpoint_where(e)]),
}

request_fallback := object.get(catalog, "request_rules_fallback", "deny")

workload_sidecar_bool if workload_sidecar

else := false

endpoint_requests(p, e) := e.requests if e.requests

else := p.requests if {
	e.live
	not e.sandbox
	not e.sink
	count(endpoint_ports(e)) == 0
	p.requests
}

# The plan form of a catalog requests section: rules in order, each rule with
# for_each_account stated once per provider account ("{account}" replaced),
# and the default (deny unless the catalog says otherwise; the plan names it
# "<rule id>/default").
request_policy(p, rq) := {
	"rules": [rr |
		some r in object.get(rq, "rules", [])
		some rr in request_rule_expansions(p, r)
	],
	"default": {
		"id": "",
		"action": object.get(rq, ["default", "action"], "deny"),
		"reason": object.get(rq, ["default", "reason"], "no request rule matched: only recognised test-mode requests may reach the live host (fail closed)"),
	},
}

request_rule_expansions(p, r) := [request_rule(r, concat("#", [r.id, format_int(i, 10)]), a) | some i, a in object.get(p, "accounts", [])] if {
	object.get(r, "for_each_account", false)
} else := [request_rule(r, r.id, null)]

request_rule(r, id, account) := object.remove(
	{
		"id": id,
		"methods": [upper(m) | some m in object.get(r, "methods", [])],
		"path": subst_match(object.get(r, "path", null), account),
		"headers": [request_header(h, account) | some h in object.get(r, "headers", [])],
		"action": r.action,
		"redirect": request_redirect(r),
		"reason": subst(object.get(r, "reason", ""), account),
		"credential": object.get(r, "credential", ""),
	},
	{k | some k in ["path", "redirect"]; request_rule_null(r, k)},
)

request_rule_null(r, "path") if object.get(r, "path", null) == null

request_rule_null(r, "redirect") if not r.sandbox

request_redirect(r) := redirect_of(r.sandbox) if r.sandbox

else := null

request_header(h, account) := object.union(
	{"name": lower(h.name), "absent": object.get(h, "absent", false)},
	{k: subst_match(m, account) | some k in ["value", "basic_user"]; m := h[k]},
)

subst_match(null, _) := null

subst_match(m, account) := {k: subst(v, account) | some k, v in m} if m != null

subst(v, account) := replace(v, "{account}", account) if {
	is_string(v)
	account != null
} else := v

# ------------------------------------------------------------------ exceptions

exception_reason(x) := sprintf("exception %s (owner %s, ticket %s, until %s): %s", [x.id, x.owner, x.ticket, x.expires, object.get(x, "reason", "no reason given")])

exception_base(x) := {
	"id": exception_ruleset_name(x),
	"action": "allow",
	"category": "exception",
	"reason": exception_reason(x),
}

# The exception's own rule, plus allow rules for every catalog pattern it
# covers that would otherwise win because it is more specific (or equally
# specific with a port filter). The most specific pattern wins, so an
# exception for "*.stripe.com" must also be said on "api.stripe.com".
exception_rules(x) := array.concat(
	[object.union(exception_base(x), {"hosts": object.get(x, "hosts", []), "cidrs": object.get(x, "cidrs", []), "ports": object.get(x, "ports", [])})],
	array.concat(
		[object.union(exception_base(x), {"id": extra_id(x, k), "hosts": [k[0]], "ports": k[1]}) | some k in sort(covered_host_patterns(x))],
		[object.union(exception_base(x), {"id": extra_id(x, k), "cidrs": [k[0]], "ports": k[1]}) | some k in sort(covered_cidrs(x))],
	),
)

# exception:<id>:<pattern>[:<ports>], unique within the overlay.
extra_id(x, k) := concat(":", [exception_ruleset_name(x), k[0]]) if count(k[1]) == 0

else := concat(":", [exception_ruleset_name(x), k[0], ports_text(k[1])])

# [pattern, ports] pairs for catalog host rules the exception must restate.
# Candidates come from the catalog index: an exact exception host can only
# tie with the same pattern; a wildcard scans the index keys (strings only).
covered_host_patterns(x) := {[p, covered_ports(x, r)] |
	some e in object.get(x, "hosts", [])
	some p in covered_candidates(e)
	some ref in object.get(catalog_index.hosts, p, [])
	r := ref_rule(ref)
	host_covers(e, p, x, r)
}

covered_candidates(e) := [e] if not contains(e, "*")

else := object.keys(catalog_index.hosts) if e == "*"

else := array.concat([e], object.get(catalog_index.hosts_under, substring(e, 2, -1), [])) if catalog_index.hosts_under

else := array.concat([e], computed_hosts_under(substring(e, 2, -1)))

# The indexed patterns strictly under suffix s (what hosts_under[s] holds).
computed_hosts_under(s) := [p |
	some p, _ in catalog_index.hosts
	endswith(trim_prefix(p, "*."), concat("", [".", s]))
]

covered_cidrs(x) := {[c, covered_ports(x, r)] |
	some e in object.get(x, "cidrs", [])
	some r in catalog_cidr_rules
	some c in r.cidrs
	cidr_covers(e, c, x, r)
}

# The catalog rules with CIDRs: production networks and ports-only endpoints.
catalog_cidr_rules := array.concat(cidr_rules, [ref_rule(ref) | some ref in catalog_index.ports_only])

# The exception's ports when it has any, else the covered rule's (a
# port-filtered rule beats an unfiltered one on the same pattern).
covered_ports(x, r) := x.ports if count(object.get(x, "ports", [])) > 0

else := object.get(r, "ports", [])

# e covers p: every name p matches, e matches too, and p would win over e.
host_covers(e, p, _, _) if {
	e == "*"
	p != "*"
}

host_covers(e, p, _, _) if {
	startswith(e, "*.")
	endswith(trim_prefix(p, "*."), substring(e, 1, -1))
}

# Same pattern: the catalog rule wins only through its port filter.
host_covers(e, p, x, r) if {
	e == p
	count(object.get(r, "ports", [])) > 0
	count(object.get(x, "ports", [])) == 0
}

cidr_covers(e, c, _, _) if {
	e != c
	cidr_family(e) == cidr_family(c)
	cidr_bits(e) < cidr_bits(c)
	net.cidr_contains(e, c)
}

cidr_covers(e, c, x, r) if {
	e == c
	count(object.get(r, "ports", [])) > 0
	count(object.get(x, "ports", [])) == 0
}

cidr_family(c) := 6 if contains(c, ":")

else := 4

cidr_bits(c) := to_number(split(c, "/")[1])

# ------------------------------------------------------- reference decision
#
# The matching semantics of policy/plan (types.go), written once in Rego.
# Never on a hot path: unit tests and the Go property test assert against it.
# Host names are expected normalized (lowercase ASCII/punycode); a trailing
# dot is ignored; IPs are expected unmapped (the Go side unmaps them).
#
# Indexing: a destination name has few candidate patterns (the name, "*."
# plus each proper suffix, "*"); each is looked up in an object keyed by
# pattern instead of matching every catalog pattern against the name. For
# the catalog rule set the engine supplies that object as data.catalog.index
# (a pure re-keying of the catalog, see policy/index.go); without it (unit
# tests with a fixture catalog) it is computed here, which costs one pass.

destination := object.get(input, "destination", {})

dest_host := lower(trim_suffix(object.get(destination, "host", ""), "."))

dest_port := object.get(destination, "port", 0)

dest_ip := object.get(destination, "ip", "")

dest_labels := split(dest_host, ".")

host_candidates := array.concat(
	array.concat([dest_host], [concat("", ["*.", concat(".", array.slice(dest_labels, i, count(dest_labels)))]) |
		some i in numbers.range(1, count(dest_labels) - 1)
		i > 0 # numbers.range counts down when start > end (one-label names)
		i < count(dest_labels)
	]),
	["*"],
) if dest_host != ""

# Larger is more specific.
candidate_rank[c] := count(host_candidates) - i if some i, c in host_candidates

# The class overlay: exception rule sets, then the plan's own rules.
overlay_rules := array.concat(
	[r | some n in object.get(plan, "overlay_include", []); some r in overlay_ruleset(n)],
	object.get(plan, "rules", []),
)

# An exception's rule set is found through the (few) matching exceptions:
# looking a key up in rulesets would enumerate every exception.
overlay_ruleset(n) := exception_rules(x) if {
	some x in matching_exceptions
	exception_ruleset_name(x) == n
} else := rulesets[n]

# The shared base, when it is not exactly the catalog rule set (custom
# policies): evaluated in full.
uses_catalog_index if object.get(plan, "include", []) == [catalog_ruleset]

generic_base_rules := [r | some n in object.get(plan, "include", []); some r in rulesets[n]] if not uses_catalog_index

overlay_by_host[p] contains i if {
	some i, r in overlay_rules
	some p in object.get(r, "hosts", [])
}

generic_base_by_host[p] contains i if {
	some i, r in generic_base_rules
	some p in object.get(r, "hosts", [])
}

# Catalog index: hosts maps pattern -> positions in catalog_rules as
# [kind, i, j]: [0, provider, endpoint] or [1, zone, 0] (the order of
# catalog_rules); ports_only lists the endpoints without a live host.
catalog_index := catalog.index if catalog.index

else := {
	"hosts": computed_host_index,
	"ports_only": computed_ports_only,
	"exceptions": {"other": numbers.range(0, count(object.get(catalog, "exceptions", [])) - 1)},
}

computed_ports_only := [[0, i, j] |
	some i, pv in object.get(catalog, "providers", [])
	some j, e in object.get(pv, "endpoints", [])
	endpoint_has_cidrs(e)
]

computed_host_index[p] contains [0, i, j] if {
	some i, pv in object.get(catalog, "providers", [])
	some j, e in object.get(pv, "endpoints", [])
	some p in endpoint_hosts(e)
}

computed_host_index[h] contains [1, i, 0] if {
	some i, z in object.get(catalog, "zones", [])
	some h in zone_hosts(z)
}

ref_rule(ref) := endpoint_rule(catalog.providers[ref[1]], catalog.providers[ref[1]].endpoints[ref[2]], workload_sidecar_bool) if ref[0] == 0

ref_rule(ref) := zone_rule(catalog.zones[ref[1]]) if ref[0] == 1

ref_rule(ref) := cidr_rule(catalog.cidrs[ref[1]]) if ref[0] == 2

port_rank(r) := 0 if count(object.get(r, "ports", [])) == 0

port_rank(r) := 1 if {
	dest_port != 0
	dest_port in r.ports
}

# The ports of protocols that show the sidecar no server name
# (plan.NameBlindPorts): a host rule filtered to only these ports is decided
# by DNS (plan.DNSHeld), as if on its port, for every pattern but "*".
name_blind_ports := {21, 22, 23, 25, 110, 143, 587, 2525, 2587, 3306, 5432, 6379}

# plan.ImplicitTLSCompanionPorts: may sit beside name-blind ports.
implicit_tls_companion_ports := {465, 993, 995, 2465}

dns_lookup if {
	dest_port == 0
	object.get(destination, "protocol", "") == "dns"
}

dns_held(r) if {
	some b in object.get(r, "ports", [])
	b in name_blind_ports
	every p in r.ports {
		dns_held_port(p)
	}
}

dns_held_port(p) if p in name_blind_ports

dns_held_port(p) if p in implicit_tls_companion_ports

host_port_rank(r, c) := 1 if {
	dns_lookup
	c != "*"
	dns_held(r)
} else := port_rank(r)

# A match is [specificity, port filter matched, layer, a, b, c]; the
# maximum wins. Layer 1 is the overlay (c = -position), layer 0 the base:
# (a, b, c) = -(kind, i, j) for the catalog index, (0, -position, 0)
# otherwise. Negated positions make the earliest rule win within a layer.
host_matches contains [rank, host_port_rank(r, c), 1, 0, 0 - i, 0] if {
	index := overlay_by_host
	some c, rank in candidate_rank
	some i in index[c]
	r := overlay_rules[i]
}

host_matches contains [rank, host_port_rank(ref_rule(ref), c), 0, 0 - ref[0], 0 - ref[1], 0 - ref[2]] if {
	uses_catalog_index
	hosts := catalog_index.hosts
	some c, rank in candidate_rank
	some ref in hosts[c]
}

host_matches contains [rank, host_port_rank(r, c), 0, 0, 0 - i, 0] if {
	not uses_catalog_index
	index := generic_base_by_host
	some c, rank in candidate_rank
	some i in index[c]
	r := generic_base_rules[i]
}

dest_family := cidr_family(dest_ip) if dest_ip != ""

cidr_matches contains [cidr_bits(c), port_rank(r), 1, 0, 0 - i, 0] if {
	some i, r in overlay_rules
	some c in object.get(r, "cidrs", [])
	cidr_match(c)
}

cidr_matches contains [cidr_bits(c), port_rank(cidr_rule(c)), 0, -2, 0 - i, 0] if {
	uses_catalog_index
	some i, c in object.get(catalog, "cidrs", [])
	cidr_match(c)
}

cidr_matches contains [cidr_bits(c), port_rank(r), 0, 0, 0 - ref[1], 0 - ref[2]] if {
	uses_catalog_index
	some ref in catalog_index.ports_only
	r := ref_rule(ref)
	some c in r.cidrs
	cidr_match(c)
}

cidr_matches contains [cidr_bits(c), port_rank(r), 0, 0, 0 - i, 0] if {
	not uses_catalog_index
	some i, r in generic_base_rules
	some c in object.get(r, "cidrs", [])
	cidr_match(c)
}

cidr_match(c) if {
	cidr_family(c) == dest_family
	net.cidr_contains(c, dest_ip)
}

winner := max(host_matches) if count(host_matches) > 0

else := max(cidr_matches) if count(cidr_matches) > 0

winning_rule := overlay_rules[0 - winner[4]] if winner[2] == 1

winning_rule := ref_rule([0 - winner[3], 0 - winner[4], 0 - winner[5]]) if {
	winner[2] == 0
	uses_catalog_index
}

winning_rule := generic_base_rules[0 - winner[4]] if {
	winner[2] == 0
	not uses_catalog_index
}

plan_report if object.get(plan, "mode", "enforce") == "report"

rule_report(r) if object.get(r, "mode", "enforce") == "report"

rule_report(_) if plan_report

decision := decide(winning_rule) if winner

else := decide({"id": "default", "action": plan.default, "reason": sprintf("no rule matched; the plan's default is %s", [plan.default])})

decide(r) := object.union(base_decision(r), {"action": "allow", "would_deny": r.action != "allow"}) if rule_report(r)

else := object.union(base_decision(r), {"action": r.action, "redirect": r.redirect}) if r.action == "redirect"

else := object.union(base_decision(r), {"action": r.action})

base_decision(r) := {
	"matched_action": r.action,
	"rule": r.id,
	"reason": object.get(r, "reason", ""),
	"category": object.get(r, "category", ""),
	"would_deny": false,
}

# ------------------------------------------------ reference request decision
#
# plan.DecideRequest (policy/plan/request.go) written in Rego, for
# input.workload + input.destination + input.request:
#
#   {"method": "POST", "path": <the path in normal form (plan.NormalizePath),
#    absent when it has none>, "headers": {<lower-case name>: <value>}}
#
# The host rule is the one decision finds; without request rules the answer
# is decision's. Otherwise the first request rule whose conditions all hold
# decides, else the policy's default. ignore_case folds with lower() (Unicode)
# where the plan folds ASCII only: they agree on ASCII values.

request := object.get(input, "request", {})

request_decision := decision if not winning_rule.requests

request_decision := request_decide(winning_rule, matched_request_rule) if winning_rule.requests

malformed_path_rule := {
	"id": "malformed-path",
	"action": "deny",
	"reason": "the request path cannot be put in normal form: refused (fail closed)",
}

matched_request_rule := malformed_path_rule if {
	not is_string(object.get(request, "path", null))
} else := winning_rule.requests.rules[min(request_rule_hits)] if {
	count(request_rule_hits) > 0
} else := object.union(winning_rule.requests.default, {"id": request_default_id})

request_default_id := winning_rule.requests.default.id if winning_rule.requests.default.id != ""

else := concat("/", [winning_rule.id, "default"])

request_rule_hits contains i if {
	some i, r in winning_rule.requests.rules
	request_method_ok(r)
	request_path_ok(r)
	every h in object.get(r, "headers", []) {
		request_header_holds(h)
	}
}

request_method_ok(r) if count(object.get(r, "methods", [])) == 0

request_method_ok(r) if object.get(request, "method", "") in r.methods

request_path_ok(r) if not r.path

request_path_ok(r) if string_matches(r.path, request.path)

request_headers := object.get(request, "headers", {})

request_header_holds(h) if {
	object.get(h, "absent", false)
	object.get(request_headers, h.name, null) == null
}

request_header_holds(h) if {
	h.basic_user
	string_matches(h.basic_user, basic_user_of(request_headers[h.name]))
}

request_header_holds(h) if {
	not h.basic_user
	h.value
	string_matches(h.value, request_headers[h.name])
}

request_header_holds(h) if {
	not object.get(h, "absent", false)
	not h.basic_user
	not h.value
	object.get(request_headers, h.name, null) != null
}

# The user of "Authorization: Basic <base64 of user:password>": the scheme in
# any case, standard or URL alphabet, padding optional; all of it without a
# colon.
basic_user_of(v) := substring(basic_credentials(v), 0, indexof(basic_credentials(v), ":")) if {
	indexof(basic_credentials(v), ":") >= 0
} else := basic_credentials(v)

basic_credentials(v) := base64url.decode(replace(replace(trim_left(substring(v, 6, -1), " "), "+", "-"), "/", "_")) if {
	lower(substring(v, 0, 6)) == "basic "
}

string_matches(m, v) if regex.match(concat("", ["^(?:", m.regex, ")$"]), v)

string_matches(m, v) if {
	not object.get(m, "ignore_case", false)
	startswith(v, m.prefix)
}

string_matches(m, v) if {
	object.get(m, "ignore_case", false)
	startswith(lower(v), lower(m.prefix))
}

string_matches(m, v) if {
	not object.get(m, "ignore_case", false)
	v == m.exact
}

string_matches(m, v) if {
	object.get(m, "ignore_case", false)
	lower(v) == lower(m.exact)
}

request_decide(h, rr) := object.union(request_base(h, rr), {"action": "allow", "would_deny": rr.action != "allow"}) if {
	rule_report(h)
} else := object.union(request_base(h, rr), {"action": rr.action, "redirect": rr.redirect}) if {
	rr.action == "redirect"
} else := object.union(request_base(h, rr), {"action": rr.action})

request_base(h, rr) := {
	"matched_action": rr.action,
	"rule": h.id,
	"request_rule": rr.id,
	"credential": object.get(rr, "credential", ""),
	"reason": object.get(rr, "reason", ""),
	"category": object.get(h, "category", ""),
	"would_deny": false,
}
