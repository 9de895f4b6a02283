package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/egressguard/egressguard/policy"
)

// adminHandler serves health, readiness, metrics and the JSON APIs scripts
// (and, later, the admin page) use.
func (g *guard) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !g.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.reg, promhttp.HandlerOpts{Registry: g.reg}))
	if g.enf != nil {
		mux.Handle("GET /debug/xds", g.enf.DebugHandler())
	}
	mux.HandleFunc("GET /api/policy", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, g.engine.Status())
	})
	mux.HandleFunc("GET /api/decisions", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		if n <= 0 || n > 1000 {
			n = 100
		}
		writeJSON(w, http.StatusOK, g.ring.Recent(n))
	})
	mux.HandleFunc("GET /api/decide", g.apiDecide)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprint(w, `egressguard admin
  /healthz            liveness
  /readyz             readiness (policy loaded, listeners bound)
  /metrics            Prometheus metrics
  /api/policy         policy status: version, last reload, last error, expired exceptions
  /api/decisions      recent denied/redirected decisions (?limit=N)
  /api/decide         ?workload=env=staging,app=checkout&dest=api-m.paypal.com:443
  /debug/xds          connected sidecars; ?node=ID for one node's config
`)
	})
	return mux
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
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "workload: " + err.Error()})
		return
	}
	dest, err := policy.ParseDestination(q.Get("dest"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "dest: " + err.Error()})
		return
	}
	d, err := g.engine.Decide(wl, dest)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"workload":       wl,
		"class":          g.engine.ClassKey(wl),
		"destination":    q.Get("dest"),
		"decision":       d,
		"notes":          decisionNotes(d, dest),
		"policy_version": g.engine.Version(),
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
