package main

import (
	"net/http"

	"github.com/egressguard/egressguard/internal/admin"
	"github.com/egressguard/egressguard/policy"
)

// adminHandler wires the guard into the admin port's handler (package
// internal/admin): health, readiness, metrics, the JSON APIs and the page.
func (g *guard) adminHandler() http.Handler {
	o := admin.Options{
		Registry:  g.reg,
		Ready:     g.ready.Load,
		Policy:    g.engine.Status,
		Decisions: g.ring,
		Recorder:  g.rec,
		Decide:    http.HandlerFunc(g.apiDecide),
	}
	if g.enf != nil {
		o.Sidecars = g.enf.Nodes
		o.XDSDebug = g.enf.DebugHandler()
	}
	return admin.Handler(o)
}

// apiDecide answers "what happens if this workload calls that destination?"
// with the same plan.Decide the enforcers use.
func (g *guard) apiDecide(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	wl, err := parseWorkload(q.Get("workload"), g.invs.Current())
	if q.Get("workload") == "" {
		wl, err = parseWorkload("env="+g.invs.Current().DefaultEnvironment(), g.invs.Current())
	}
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
		"class":          g.engine.ClassKey(wl),
		"destination":    q.Get("dest"),
		"decision":       d,
		"notes":          decisionNotes(d, dest),
		"policy_version": g.engine.Version(),
	})
}
