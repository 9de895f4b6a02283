package xds

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
)

// DebugHandler serves a node's current configuration as JSON:
// GET ?node=<id> gives the node's identity, plan fingerprint, protocol state
// (NACKs included) and every resource it is being served; without node=, a
// list of connected nodes.
func (e *Enforcer) DebugHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		id := r.URL.Query().Get("node")
		if id == "" {
			_ = json.NewEncoder(w).Encode(map[string]any{"nodes": e.nodeSummaries()})
			return
		}
		out, ok := e.nodeDebug(id)
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "node not connected", "node": id})
			return
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	})
}

type nodeSummary struct {
	ID          string    `json:"id"`
	Kind        string    `json:"kind"`
	Workload    string    `json:"workload"`
	Namespace   string    `json:"namespace,omitempty"`
	Environment string    `json:"environment"`
	Plan        string    `json:"plan_fingerprint"`
	Streams     int       `json:"streams"`
	BuiltAt     time.Time `json:"built_at"`
	Error       string    `json:"last_error,omitempty"`
}

func (e *Enforcer) nodeSummaries() []nodeSummary {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]nodeSummary, 0, len(e.nodes))
	for _, ns := range e.nodes {
		out = append(out, summarize(ns))
	}
	slices.SortFunc(out, func(a, b nodeSummary) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}

func summarize(ns *nodeState) nodeSummary {
	s := nodeSummary{ID: ns.id, Kind: ns.kind.String(), Plan: ns.planFP, Streams: ns.streams, BuiltAt: ns.builtAt, Error: ns.lastErr}
	if ns.workload != nil {
		s.Workload, s.Namespace, s.Environment = ns.workload.Name, ns.workload.Namespace, ns.workload.Environment
	}
	return s
}

func (e *Enforcer) nodeDebug(id string) (map[string]any, bool) {
	e.mu.Lock()
	ns, ok := e.nodes[id]
	var sum nodeSummary
	if ok {
		sum = summarize(ns)
	}
	e.mu.Unlock()
	if !ok {
		return nil, false
	}
	st, _ := e.cache.status(id)
	out := map[string]any{"node": sum, "protocol": st}
	if snap := e.cache.Snapshot(id); snap != nil {
		res := map[string][]json.RawMessage{}
		for t := range numTypes {
			names := make([]string, 0, len(snap.sets[t]))
			for n := range snap.sets[t] {
				names = append(names, n)
			}
			slices.Sort(names)
			for _, n := range names {
				if t == typeSecret {
					// Key material never leaves through the admin API:
					// a secret shows as its name and version.
					b, _ := json.Marshal(map[string]string{"name": n, "version": snap.sets[t][n].version})
					res[typeNames[t]+"s"] = append(res[typeNames[t]+"s"], b)
					continue
				}
				m, err := snap.sets[t][n].message()
				if err != nil {
					continue
				}
				b, err := protojson.Marshal(m)
				if err != nil {
					continue
				}
				res[typeNames[t]+"s"] = append(res[typeNames[t]+"s"], b)
			}
		}
		out["resources"] = res
	}
	return out, true
}

// NodeView is one connected node as the admin page shows it: its identity
// and plan, and its protocol state (config version served, NACKs).
type NodeView struct {
	nodeSummary
	Protocol NodeStatus `json:"protocol"`
}

// Nodes lists the connected nodes, sorted by ID: what DebugHandler lists,
// with each node's protocol state.
func (e *Enforcer) Nodes() []NodeView {
	sums := e.nodeSummaries()
	out := make([]NodeView, 0, len(sums))
	for _, s := range sums {
		st, _ := e.cache.status(s.ID)
		out = append(out, NodeView{nodeSummary: s, Protocol: st})
	}
	return out
}
