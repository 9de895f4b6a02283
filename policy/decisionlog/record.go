// Package decisionlog records egress decisions in the shape of OPA's
// decision logs (decision_id, timestamp, path, input, result), one JSON
// object per line, so the tools that read OPA decision logs read these too.
//
// A record carries who asked (the workload's name, namespace, environment
// and labels), what they asked for (host, port, IP, protocol) and what was
// decided (the plan.Decision: action, rule, reason, redirect target). None
// of these types holds a secret value; keep it that way when adding fields.
package decisionlog

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"time"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

// Paths of the enforcement points, the Record.Path values.
const (
	PathDNS  = "egressguard/dns"
	PathXDS  = "egressguard/xds"
	PathEval = "egressguard/eval"
)

// Record is one decision, in OPA decision-log shape.
type Record struct {
	// DecisionID is a random 128-bit hex identifier.
	DecisionID string    `json:"decision_id"`
	Timestamp  time.Time `json:"timestamp"`
	// Path names the enforcement point (PathDNS, PathXDS, PathEval).
	Path   string        `json:"path"`
	Input  Input         `json:"input"`
	Result plan.Decision `json:"result"`
	// Revision is the policy version that decided, when the caller knows
	// it (policy.Engine.Version()).
	Revision string `json:"revision,omitempty"`
	// Labels identify the reporting instance (OPA's "labels"), e.g.
	// {"id": pod name, "version": build}.
	Labels map[string]string `json:"labels,omitempty"`
}

// Input is what the decision was about: OPA's input document.
type Input struct {
	Workload    WorkloadRef `json:"workload"`
	Destination Destination `json:"destination"`
}

// WorkloadRef is the identity part of an inventory.Workload (no IPs or node
// IDs: they say where a workload runs, not who it is).
type WorkloadRef struct {
	Name        string `json:"name"`
	Namespace   string `json:"namespace,omitempty"`
	Environment string `json:"environment"`
	// Labels is shared with the inventory snapshot (immutable): do not
	// modify it.
	Labels map[string]string `json:"labels,omitempty"`
}

// Destination is a plan.Destination in JSON form.
type Destination struct {
	Host     string     `json:"host,omitempty"`
	Port     uint16     `json:"port,omitempty"`
	IP       netip.Addr `json:"ip,omitzero"`
	Protocol string     `json:"protocol,omitempty"`
}

// NewRecord builds a record stamped with a fresh decision ID and the current
// time (UTC). A nil workload is recorded as the name "unknown"; a decision
// without a rule (an enforcer bug: Decide never returns one) is recorded
// with the rule ID "" and the reason "no rule in decision", rather than
// dropped.
func NewRecord(path string, w *inventory.Workload, d plan.Destination, dec plan.Decision) Record {
	r := Record{
		DecisionID: NewDecisionID(),
		Timestamp:  time.Now().UTC(),
		Path:       path,
		Input: Input{
			Destination: Destination{Host: d.Host, Port: d.Port, IP: d.IP, Protocol: d.Protocol},
		},
		Result: dec,
	}
	if w == nil {
		r.Input.Workload = WorkloadRef{Name: inventory.UnknownName}
	} else {
		r.Input.Workload = WorkloadRef{Name: w.Name, Namespace: w.Namespace, Environment: w.Environment, Labels: w.Labels}
	}
	r.Result = sanitize(r.Result)
	return r
}

// sanitize makes a decision safe to marshal: plan.Decision.MarshalJSON
// dereferences Rule.
func sanitize(d plan.Decision) plan.Decision {
	if d.Rule == nil {
		d.Rule = &plan.Rule{Reason: "no rule in decision"}
	}
	return d
}

// NewDecisionID returns a random 128-bit identifier in hex.
func NewDecisionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// Sink receives decision records. Implementations are safe for concurrent
// use and never block the caller for long: errors are counted, not
// returned to the hot path.
type Sink interface {
	Log(r Record)
}

// Nop is a Sink that discards records.
type Nop struct{}

// Log implements Sink.
func (Nop) Log(Record) {}

// Multi returns a Sink that logs to every non-nil sink in order.
func Multi(sinks ...Sink) Sink {
	out := make(multi, 0, len(sinks))
	for _, s := range sinks {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

type multi []Sink

func (m multi) Log(r Record) {
	for _, s := range m {
		s.Log(r)
	}
}
