package review

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/egressguard/egressguard/policy"
)

// lintOptOuts lists every host-network opt-out of one catalog file (an
// info finding each: they admit pods no sidecar governs, so a reviewer
// sees all of them) and holds each to the exception rules (timeBoxed).
func lintOptOuts(file string, data []byte, c *policy.Catalog, now, limit time.Time) []Finding {
	var out []Finding
	lines := sectionLines(data, "host_network_opt_outs")
	for i, o := range c.HostNetworkOptOuts {
		add := func(sev, msg string) {
			out = append(out, Finding{File: file, Line: lines[i], Check: "host-network-opt-out", Severity: sev,
				Message: fmt.Sprintf("host_network_opt_outs[%d] (%s): %s", i, o.ID, msg)})
		}
		scope := "pods " + o.Pods
		if o.Pods == "" {
			scope = "pods of any name"
		}
		var labels []string
		for _, k := range slices.Sorted(maps.Keys(o.Labels)) {
			labels = append(labels, k+"="+o.Labels[k])
		}
		if len(labels) > 0 {
			scope += " labelled " + strings.Join(labels, ",")
		}
		add("info", fmt.Sprintf("admits host-network %s in namespace %s until %s (owner %s, ticket %s)", scope, o.Namespace, o.Expires, o.Owner, o.Ticket))
		timeBoxed(add, o.Owner, o.Ticket, o.Expires, now, limit)
	}
	return out
}
