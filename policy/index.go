package policy

import (
	"sort"
	"strings"
)

// catalogIndex re-keys the merged catalog by host pattern for the Rego
// reference decision (data.catalog.index.hosts): pattern -> positions in the
// default policy's catalog rule set, as [0, provider, endpoint] or
// [1, zone, 0], in rule-set order; ports_only lists the endpoints whose
// rules have CIDRs (ports-only endpoints, matched on every destination, and
// endpoints with addresses); hosts_under maps a
// suffix to the patterns under it; exceptions files each exception under
// one selector key. It carries no semantics of its own: the
// Rego computes the same object when it is absent, and a test checks that
// both agree.
func catalogIndex(c *Catalog) map[string]any {
	hosts := map[string][][3]int{}
	portsOnly := []any{}
	for i, p := range c.Providers {
		for j, e := range p.Endpoints {
			if e.Live == "" || len(e.CIDRs) > 0 {
				portsOnly = append(portsOnly, []any{0, i, j}) // has CIDRs
			}
			switch {
			case e.Live != "":
				hosts[e.Live] = append(hosts[e.Live], [3]int{0, i, j})
			case len(e.CIDRs) == 0:
				hosts["*"] = append(hosts["*"], [3]int{0, i, j})
			}
		}
	}
	for i, z := range c.Zones {
		for _, h := range ZoneHosts(z) { // zones include their apex
			hosts[h] = append(hosts[h], [3]int{1, i, 0})
		}
	}
	// hosts_under: suffix s -> the indexed patterns strictly under s (whose
	// name, without "*.", ends in "." + s), for exceptions like "*.s".
	under := map[string][]string{}
	for k := range hosts {
		name := strings.TrimPrefix(k, "*.")
		for i := 0; i < len(name); i++ {
			if name[i] == '.' {
				under[name[i+1:]] = append(under[name[i+1:]], k)
			}
		}
	}
	hostsUnder := make(map[string]any, len(under))
	for s, ps := range under {
		sort.Strings(ps)
		l := make([]any, len(ps))
		for i, p := range ps {
			l[i] = p
		}
		hostsUnder[s] = l
	}
	out := make(map[string]any, len(hosts))
	for k, v := range hosts {
		refs := make([]any, len(v))
		for i, r := range v {
			refs[i] = []any{r[0], r[1], r[2]}
		}
		out[k] = refs
	}
	return map[string]any{"hosts": out, "hosts_under": hostsUnder, "ports_only": portsOnly, "exceptions": exceptionIndex(c.Exceptions)}
}

// exceptionIndex files each exception under one key of its selector (the
// first label in key order, else the name, else the namespace, else
// "other"), so that the policy checks only the candidates whose key a
// workload has. The policy still checks every candidate's full selector.
func exceptionIndex(xs []Exception) map[string]any {
	byLabel := map[string]any{}
	byName := map[string]any{}
	byNamespace := map[string]any{}
	other := []any{}
	add := func(m map[string]any, k string, i int) {
		l, _ := m[k].([]any)
		m[k] = append(l, i)
	}
	for i, x := range xs {
		sel := x.Workload
		switch {
		case len(sel.Labels) > 0:
			keys := make([]string, 0, len(sel.Labels))
			for k := range sel.Labels {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			m, _ := byLabel[keys[0]].(map[string]any)
			if m == nil {
				m = map[string]any{}
				byLabel[keys[0]] = m
			}
			add(m, sel.Labels[keys[0]], i)
		case sel.Name != "":
			add(byName, sel.Name, i)
		case sel.Namespace != "":
			add(byNamespace, sel.Namespace, i)
		default:
			other = append(other, i)
		}
	}
	return map[string]any{"by_label": byLabel, "by_name": byName, "by_namespace": byNamespace, "other": other}
}
