package admin

import (
	"github.com/egressguard/egressguard/policy/plan"
)

// PlanEntry is one row of a plan's effective match table on /api/plan.
type PlanEntry struct {
	Kind     string         `json:"kind"`
	Pattern  string         `json:"pattern"`
	Port     uint16         `json:"port,omitempty"`
	Rule     string         `json:"rule"`
	Action   plan.Action    `json:"action"`
	Mode     plan.Mode      `json:"mode,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	Category string         `json:"category,omitempty"`
	Redirect *plan.Redirect `json:"redirect,omitempty"`
}

// PlanView is what /api/plan returns: a workload class's plan as its
// effective match table (plan.Plan.Entries), in match-table order.
type PlanView struct {
	Workload      any         `json:"workload"`
	Class         string      `json:"class"`
	Fingerprint   string      `json:"fingerprint"`
	Default       plan.Action `json:"default"`
	Mode          plan.Mode   `json:"mode"`
	PolicyVersion string      `json:"policy_version"`
	Entries       []PlanEntry `json:"entries"`
}

// NewPlanView renders p, the plan of the workload class class, for /api/plan.
// workload is echoed as given (the parsed workload).
func NewPlanView(workload any, class, policyVersion string, p *plan.Plan) PlanView {
	v := PlanView{
		Workload:      workload,
		Class:         class,
		Fingerprint:   p.Fingerprint(),
		Default:       p.Default(),
		Mode:          p.Mode(),
		PolicyVersion: policyVersion,
		Entries:       []PlanEntry{},
	}
	for _, e := range p.Entries() {
		r := e.Rule
		pe := PlanEntry{
			Kind: e.Kind.String(), Pattern: e.Pattern, Port: e.Port, Rule: r.ID,
			Action: r.Action, Mode: r.Mode, Reason: r.Reason, Category: r.Category, Redirect: r.Redirect,
		}
		v.Entries = append(v.Entries, pe)
	}
	return v
}
