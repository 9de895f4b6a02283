package main

import (
	"net/http"
	"strings"

	"github.com/egressguard/egressguard/internal/admin"
	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy"
)

// adminHandler wires the guard into the admin port's handler (package
// internal/admin): health, readiness, metrics, the JSON APIs and the page.
func (g *guard) adminHandler() http.Handler {
	o := admin.Options{
		Registry:  g.reg,
		Ready:     g.isReady,
		Policy:    g.engine.Status,
		Decisions: g.ring,
		Recorder:  g.rec,
		Decide:    http.HandlerFunc(g.apiDecide),
		Plan:      http.HandlerFunc(g.apiPlan),
	}
	if g.enf != nil {
		o.Sidecars = g.enf.Nodes
		o.XDSDebug = g.enf.DebugHandler()
	}
	return admin.Handler(o)
}

// requestWorkload parses ?workload= the way /api/decide and /api/plan both
// read it: empty means the inventory's default environment.
func (g *guard) requestWorkload(r *http.Request) (*inventory.Workload, error) {
	s := r.URL.Query().Get("workload")
	if strings.TrimSpace(s) == "" {
		s = "env=" + g.inv.Current().DefaultEnvironment()
	}
	return parseWorkload(s, g.inv.Current())
}

// apiPlan answers "what is this workload class's plan?": the effective match
// table of the plan the enforcers use for it.
func (g *guard) apiPlan(w http.ResponseWriter, r *http.Request) {
	wl, err := g.requestWorkload(r)
	if err != nil {
		admin.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "workload: " + err.Error()})
		return
	}
	p, err := g.engine.PlanFor(wl)
	if err != nil {
		admin.WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	admin.WriteJSON(w, http.StatusOK, admin.NewPlanView(wl, g.engine.ClassDescription(wl), g.engine.Version(), p))
}

// apiDecide answers "what happens if this workload calls that destination?"
// with the same plan.Decide the enforcers use.
func (g *guard) apiDecide(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	wl, err := g.requestWorkload(r)
	if err != nil {
		admin.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "workload: " + err.Error()})
		return
	}
	dest, err := policy.ParseDestination(q.Get("dest"))
	if err != nil {
		admin.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "dest: " + err.Error()})
		return
	}
	d, err := g.engine.Decide(wl, dest)
	if err != nil {
		admin.WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	admin.WriteJSON(w, http.StatusOK, map[string]any{
		"workload":       wl,
		"class":          g.engine.ClassDescription(wl),
		"destination":    q.Get("dest"),
		"decision":       d,
		"notes":          decisionNotes(d, dest),
		"policy_version": g.engine.Version(),
	})
}
