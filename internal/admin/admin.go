// Package admin serves egressguard's admin port: health, readiness,
// metrics, the JSON APIs scripts use and the admin page people open first
// when staging "cannot reach" something. The page is embedded (no external
// assets) and polls the JSON APIs, so it works offline.
package admin

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/policy/decisionlog"
	"github.com/egressguard/egressguard/xds"
	"github.com/egressguard/egressguard/xds/nodeauth"
)

//go:embed page.html
var page []byte

// Options are the admin handler's dependencies; nil fields turn their
// endpoints off (or, for Sidecars, report xDS as disabled).
type Options struct {
	// Registry serves /metrics.
	Registry *prometheus.Registry
	// Ready reports readiness for /readyz.
	Ready func() bool
	// Policy reports the engine's status for /api/policy.
	Policy func() policy.Status
	// Decisions holds the recent raw decision records for /api/decisions.
	Decisions *decisionlog.Ring
	// Recorder aggregates attempts for /api/attempts and /api/counts.
	Recorder *Recorder
	// Decide answers /api/decide?workload=...&dest=... with the same
	// Decide the enforcers use.
	Decide http.Handler
	// Plan answers /api/plan?workload=... with the workload class's plan
	// (a PlanView; 400 with {"error"} for a bad workload).
	Plan http.Handler
	// Sidecars lists the xDS enforcer's connected nodes (nil: xDS off).
	Sidecars func() []xds.NodeView
	// XDSDebug serves /debug/xds.
	XDSDebug http.Handler
	// DecisionLog reports the decision-record file's health for
	// /api/decisionlog (nil: records are kept in memory only).
	DecisionLog func() decisionlog.Status
	// IdentityRefusals lists the xDS streams whose node ID was not proven
	// (nodeauth.Guard.Recent; nil: xds.identity is off) for /api/identity.
	IdentityRefusals func() []nodeauth.Refusal
	// HostNetworkOptOuts lists the catalog's host-network opt-outs with
	// the pods the webhook recently admitted under each (NewOptOutViews)
	// for /api/optouts.
	HostNetworkOptOuts func() []OptOutView
}

// Handler serves Probes and api (API, wrapped in RequireAuth or another
// guard; nil: API unguarded) on one listener.
func Handler(o Options, api http.Handler) http.Handler {
	probes := Probes(o)
	if api == nil {
		api = API(o)
	}
	mux := http.NewServeMux()
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		mux.Handle(p, probes)
	}
	mux.Handle("/", api)
	return mux
}

// Probes serves what kubelets and Prometheus read, without authentication:
// /healthz, /readyz and /metrics. Nothing else.
func Probes(o Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if o.Ready == nil || !o.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ready")
	})
	if o.Registry != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{Registry: o.Registry}))
	}
	return mux
}

// API serves the JSON APIs, /debug/xds and the admin page: production
// zones, exception owners, nodes' Envoy configuration, pod names and
// decision records. Serve it behind RequireAuth unless it is bound to
// loopback only.
func API(o Options) http.Handler {
	mux := http.NewServeMux()
	if o.XDSDebug != nil {
		mux.Handle("GET /debug/xds", o.XDSDebug)
	}
	if o.Policy != nil {
		mux.HandleFunc("GET /api/policy", func(w http.ResponseWriter, _ *http.Request) {
			WriteJSON(w, http.StatusOK, o.Policy())
		})
	}
	if o.Decisions != nil {
		mux.HandleFunc("GET /api/decisions", func(w http.ResponseWriter, r *http.Request) {
			WriteJSON(w, http.StatusOK, o.Decisions.Recent(limit(r, 100, 1000)))
		})
	}
	mux.HandleFunc("GET /api/decisionlog", func(w http.ResponseWriter, _ *http.Request) {
		st := map[string]any{"file": o.DecisionLog != nil}
		if o.DecisionLog != nil {
			st["status"] = o.DecisionLog()
		}
		WriteJSON(w, http.StatusOK, st)
	})
	if o.Decide != nil {
		mux.Handle("GET /api/decide", o.Decide)
	}
	if o.Plan != nil {
		mux.Handle("GET /api/plan", o.Plan)
	}
	if o.Recorder != nil {
		mux.HandleFunc("GET /api/attempts", func(w http.ResponseWriter, r *http.Request) {
			WriteJSON(w, http.StatusOK, map[string]any{
				"generated_at": time.Now().UTC(),
				"attempts":     o.Recorder.Attempts(limit(r, 100, DefaultMaxAttempts)),
			})
		})
		mux.HandleFunc("GET /api/counts", func(w http.ResponseWriter, _ *http.Request) {
			WriteJSON(w, http.StatusOK, o.Recorder.Counts())
		})
	}
	mux.HandleFunc("GET /api/sidecars", func(w http.ResponseWriter, _ *http.Request) {
		nodes := []xds.NodeView{}
		if o.Sidecars != nil {
			nodes = o.Sidecars()
		}
		WriteJSON(w, http.StatusOK, map[string]any{"xds_enabled": o.Sidecars != nil, "nodes": nodes})
	})
	identityAndOptOutAPIs(mux, o)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:")
		_, _ = w.Write(page)
	})
	return mux
}

// limit reads ?limit=N, falling back to def outside 1..maxN.
func limit(r *http.Request, def, maxN int) int {
	n, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || n <= 0 || n > maxN {
		return def
	}
	return n
}

// WriteJSON writes v as indented JSON with the status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
