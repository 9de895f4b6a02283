package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/netutil"
	"k8s.io/client-go/kubernetes"

	"github.com/egressguard/egressguard/internal/admin"
	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/policy/decisionlog"
)

// adminOptions wires the guard into the admin handlers (package
// internal/admin): health, readiness, metrics, the JSON APIs and the page.
func (g *guard) adminOptions() admin.Options {
	o := admin.Options{
		Registry:  g.reg,
		Ready:     g.isReady,
		Policy:    g.engine.Status,
		Decisions: g.ring,
		Recorder:  g.rec,
		Decide:    http.HandlerFunc(g.apiDecide),
		Plan:      http.HandlerFunc(g.apiPlan),

		HostNetworkOptOuts: g.optOutViews,
	}
	if g.identity != nil {
		o.IdentityRefusals = g.identity.Recent
	}
	if g.enf != nil {
		o.Sidecars = g.enf.Nodes
		o.XDSDebug = g.enf.DebugHandler()
	}
	if g.dlog != nil {
		o.DecisionLog = func() decisionlog.Status {
			st := g.dlog.Status()
			st.Dropped = g.queue.Dropped()
			return st
		}
	}
	return o
}

// adminHandlers returns the handler of admin.listen and, when
// admin.api_listen is set, the API's own (else nil: admin.listen serves
// both). The API is behind admin.auth; without it, only loopback peers get
// it (a process in the pod, `kubectl port-forward`), others 403 naming the
// setting.
func (g *guard) adminHandlers() (main, api http.Handler) {
	o := g.adminOptions()
	a := admin.API(o)
	if g.auth != nil {
		a = admin.RequireAuth(g.auth, a)
	} else {
		a = loopbackPeersOnly(a)
	}
	if g.cfg.Admin.APIListen == "" {
		return admin.Handler(o, a), nil
	}
	return admin.Probes(o), a
}

// loopbackPeersOnly serves h to loopback peers and refuses everyone else:
// the admin API without admin.auth.
func loopbackPeersOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil && ap.Addr().Unmap().IsLoopback() {
			h.ServeHTTP(w, r)
			return
		}
		admin.WriteJSON(w, http.StatusForbidden, map[string]string{"error": "the admin API answers only loopback peers " +
			"(kubectl port-forward) unless admin.auth is configured: set admin.auth.token_file or admin.auth.kubernetes"})
	})
}

// newAdminAuth builds admin.auth's authenticator (nil when none is set).
func newAdminAuth(cfg serveConfig, log *zap.Logger) (admin.Authenticator, error) {
	a := cfg.Admin.Auth
	switch {
	case a.TokenFile != "":
		return admin.NewTokenFile(a.TokenFile)
	case a.Kubernetes:
		client := cfg.Inventory.Kubernetes.client
		if client == nil {
			rc, err := kubeRESTConfig(cfg.Inventory.Kubernetes.Kubeconfig)
			if err != nil {
				return nil, fmt.Errorf("admin.auth.kubernetes: %w", err)
			}
			rc.UserAgent = "egressguard/" + version
			if client, err = kubernetes.NewForConfig(rc); err != nil {
				return nil, fmt.Errorf("admin.auth.kubernetes: %w", err)
			}
		}
		log.Info("admin API authenticates with TokenReview and SubjectAccessReview",
			zap.String("verb", admin.KubeAttributes.Verb), zap.String("resource", admin.KubeAttributes.Resource+"."+admin.KubeAttributes.Group))
		return admin.NewKube(client, a.Audiences), nil
	}
	return nil, nil
}

// serveHTTP serves h on a listener with the admin port's limits: header,
// read, write and idle timeouts and at most admin.max_connections open
// connections (more wait in the accept queue).
func (g *guard) serveHTTP(h http.Handler) func(context.Context, net.Listener) error {
	return func(ctx context.Context, lis net.Listener) error {
		errLog, err := zap.NewStdLogAt(g.log.Named("admin.http"), zap.WarnLevel)
		if err != nil {
			return err
		}
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       g.cfg.Admin.IdleTimeout,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          errLog,
		}
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(netutil.LimitListener(lis, g.cfg.Admin.MaxConnections)) }()
		select {
		case err := <-errc:
			return fmt.Errorf("admin: %w", err)
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.Shutdown.DrainTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin: %w", err)
		}
		return nil
	}
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
// with the same plan.Decide the enforcers use, or, given path=, header=
// (repeatable, "Name: value") or method=, "what happens to this request?"
// with plan.DecideRequest.
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
	if q.Has("path") || q.Has("header") || q.Has("method") {
		// A request decision (plan.DecideRequest): header values never
		// leave this handler, only their names and a credential's kind and
		// fingerprint.
		req, err := newHTTPRequest(q.Get("method"), requestPath(q.Get("path"), q.Get("dest")), q["header"])
		if err != nil {
			admin.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "header: " + err.Error()})
			return
		}
		res, err := decideRequest(g.engine, wl, dest, req)
		if err != nil {
			admin.WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		admin.WriteJSON(w, http.StatusOK, map[string]any{
			"workload":       wl,
			"class":          g.engine.ClassDescription(wl),
			"destination":    q.Get("dest"),
			"request":        res.Request,
			"decision":       res.Decision,
			"credential":     res.Credential,
			"enforced_by":    res.EnforcedBy,
			"policy_version": g.engine.Version(),
		})
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
