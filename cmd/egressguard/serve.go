package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/zapr"
	oklogrun "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/egressguard/egressguard/dnsguard"
	"github.com/egressguard/egressguard/inject"
	"github.com/egressguard/egressguard/internal/admin"
	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/inventory/kube"
	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/policy/decisionlog"
	"github.com/egressguard/egressguard/xds"
	"github.com/egressguard/egressguard/xds/nodeauth"
	"github.com/egressguard/egressguard/xds/stagingca"
)

type serveFlags struct {
	config      string
	dnsListen   string
	upstreams   []string
	xdsListen   string
	adminListen string
	invSource   string
	webhook     string
	kubeconfig  string
	decisions   string
	sets        []string
}

func newServeCmd(ro *rootOptions) *cobra.Command {
	o := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the guard: DNS resolver, xDS control plane and admin endpoint",
		Long: `serve runs egressguard. With no arguments it starts on the embedded defaults
(default catalog, default policy, every source treated as staging): DNS on
127.0.0.1:5353, xDS on 127.0.0.1:18000, admin on 127.0.0.1:9901.

An empty listen address disables that component. Flags override the --config file.
SIGHUP reloads policy and inventory. SIGTERM turns /readyz to 503 at once, keeps
DNS, xDS and the webhook serving for shutdown.lame_duck (default 5s), then drains.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.resolve(cmd, ro)
			if err != nil {
				return err
			}
			if err := cfg.validate(); err != nil {
				return err
			}
			// The log section (or its flags) decides the serve logger.
			log, err := newLogger(cfg.Log.Level, cfg.Log.Format)
			if err != nil {
				return err
			}
			ro.log = log
			routeKlog(log)
			return serve(cmd.Context(), log, cfg, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "configuration `FILE` (sections policy, inventory, dns, xds, webhook, intercept, admin, decisions, log)")
	f.StringVar(&o.dnsListen, "dns-listen", "", "DNS listen address, UDP and TCP (default 127.0.0.1:5353; port 0 picks one)")
	f.StringArrayVar(&o.upstreams, "upstream", nil, "DNS upstream `ADDR` (repeatable; default: /etc/resolv.conf)")
	f.StringVar(&o.xdsListen, "xds-listen", "", "xDS gRPC listen address (default 127.0.0.1:18000)")
	f.StringVar(&o.webhook, "webhook-listen", "", "HTTPS address of the sidecar-injection webhook (webhook.*; default off)")
	f.StringVar(&o.invSource, "inventory-source", "", "where workloads come from: file (--inventory) or kubernetes (pods and namespaces)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig `FILE` for --inventory-source kubernetes (default: in-cluster, then $KUBECONFIG)")
	f.StringVar(&o.adminListen, "admin-listen", "", "admin HTTP listen address (default 127.0.0.1:9901)")
	f.StringVar(&o.decisions, "decisions-file", "", "write decision records as JSON lines to `FILE` (\"-\" for stdout)")
	f.StringArrayVar(&o.sets, "set", nil, "set any config key, `SECTION.KEY=VALUE` (YAML value; repeatable), e.g. dns.cache_size=50000")
	return cmd
}

// routeKlog sends client-go's logs, which go through klog's process-wide
// logger, to ours (named client-go), so a JSON log stays JSON. Process-wide:
// called by the serve command only, never by serve (tests run it).
func routeKlog(log *zap.Logger) {
	klog.SetLogger(zapr.NewLogger(log.Named("client-go")))
}

// resolve merges defaults, the config file and the flags that were set;
// the caller validates the result.
func (o *serveFlags) resolve(cmd *cobra.Command, ro *rootOptions) (serveConfig, error) {
	cfg, err := loadServeConfig(o.config, o.sets...)
	if err != nil {
		return cfg, err
	}
	// Each flag the user set overrides its config key (root's persistent
	// flags included).
	for name, set := range map[string]func(){
		"catalog":                func() { cfg.Policy.Catalogs = ro.Catalogs },
		"policy":                 func() { cfg.Policy.Dir = ro.PolicyDir },
		"replace-default-policy": func() { cfg.Policy.ReplaceDefault = ro.ReplacePolicy },
		"inventory":              func() { cfg.Inventory.File = ro.InventoryFile },
		"inventory-source":       func() { cfg.Inventory.Source = o.invSource },
		"kubeconfig":             func() { cfg.Inventory.Kubernetes.Kubeconfig = o.kubeconfig },
		"dns-listen":             func() { cfg.DNS.Listen = o.dnsListen },
		"upstream":               func() { cfg.DNS.Upstreams = o.upstreams },
		"xds-listen":             func() { cfg.XDS.Listen = o.xdsListen },
		"webhook-listen":         func() { cfg.Webhook.Listen = o.webhook },
		"admin-listen":           func() { cfg.Admin.Listen = o.adminListen },
		"decisions-file":         func() { cfg.Decisions.File = o.decisions },
		"log-level":              func() { cfg.Log.Level = ro.logLevel },
		"log-format":             func() { cfg.Log.Format = ro.logFormat },
	} {
		if fl := cmd.Flag(name); fl != nil && fl.Changed {
			set()
		}
	}
	return cfg, nil
}

// guard is a running egressguard: every component built, nothing bound yet.
type guard struct {
	log     *zap.Logger
	cfg     serveConfig
	reg     *prometheus.Registry
	engine  *policy.Engine
	inv     inventory.Source   // what dns and xds read: invs or kube
	invs    *inventory.Store   // source file (or none)
	invw    *inventory.Watcher // source file
	kube    *kube.Source       // source kubernetes
	ring    *decisionlog.Ring
	rec     *admin.Recorder
	sink    decisionlog.Sink
	dlog    *decisionlog.Writer // the decision-record file's writer (or nil)
	queue   *decisionlog.Queue  // in front of dlog; closed (flushed) first
	auth    admin.Authenticator // admin API authentication (or nil)
	closers []io.Closer
	dns     *dnsguard.Server
	enf     *xds.Enforcer
	xdsSrv  *xds.Server
	// identity proves xDS node IDs (nil with xds.identity.mode off); its
	// Recent is for the admin page.
	identity *nodeauth.Guard
	webhook  *inject.Server
	// optOutLog keeps the pods the webhook admitted under each
	// host-network opt-out, for the admin page.
	optOutLog *inject.OptOutLog
	ca        *stagingca.Authority // HTTPS interception's CA; nil: off, or neither xds nor the webhook served
	ready     atomic.Bool
	// lameDuck is set on SIGTERM: /readyz answers 503 while the
	// listeners keep serving for shutdown.lame_duck.
	lameDuck atomic.Bool
}

// build constructs every component exactly as serve runs them, without
// binding a socket; validate uses it too. All problems are reported at once.
func build(ctx context.Context, log *zap.Logger, cfg serveConfig) (*guard, error) {
	g := &guard{log: log, cfg: cfg, reg: prometheus.NewRegistry()}
	g.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var errs []error

	popts := policy.Options{
		CatalogFiles:         cfg.Policy.Catalogs,
		PolicyDir:            cfg.Policy.Dir,
		ReplaceDefaultPolicy: cfg.Policy.ReplaceDefault,
		Settle:               cfg.Policy.Settle,
		MaxShrink:            cfg.Policy.MaxShrink,
		AllowEmpty:           cfg.Policy.AllowEmpty,
	}
	var eng *policy.Engine
	var err error
	if cfg.Policy.SignatureKeyFile != "" {
		popts.VerifyKey, err = policy.LoadPublicKey(cfg.Policy.SignatureKeyFile)
	}
	if err == nil {
		eng, err = policy.NewEngine(ctx, popts, log.Named("policy"), g.reg)
	}
	if err != nil {
		errs = append(errs, err)
	}
	g.engine = eng
	if g.auth, err = newAdminAuth(cfg, log); err != nil {
		errs = append(errs, err)
	}

	var kc kubernetes.Interface // the API server, with inventory.source kubernetes
	switch cfg.Inventory.source() {
	case inventoryKubernetes:
		if kc, err = kubeClient(cfg.Inventory.Kubernetes); err != nil {
			errs = append(errs, err)
		} else {
			g.kube = newKubeSource(kc, cfg.Inventory.Kubernetes, log, g.reg)
		}
		g.inv = g.kube
	default:
		snap := inventory.Empty(inventory.DefaultEnvironment)
		if cfg.Inventory.File != "" {
			if snap, err = inventory.LoadFile(cfg.Inventory.File); err != nil {
				errs = append(errs, fmt.Errorf("inventory: %w", err))
			}
		}
		g.invs = inventory.NewStore(snap)
		g.inv = g.invs
		if cfg.Inventory.File != "" {
			g.invw = inventory.NewWatcher(cfg.Inventory.File, g.invs, log.Named("inventory"),
				inventory.WatcherOptions{Metrics: inventory.NewMetrics(g.reg)})
		}
	}

	dm := decisionlog.NewMetrics(g.reg)
	g.ring = decisionlog.NewRing(max(cfg.Decisions.Recent, 1))
	g.rec = admin.NewRecorder(0, 0, nil)
	sinks := []decisionlog.Sink{g.ring, g.rec}
	dlogLog := log.Named("decisionlog")
	switch cfg.Decisions.File {
	case "":
	case "-":
		g.dlog = decisionlog.NewWriter(os.Stdout, dm, dlogLog)
	default:
		f, err := decisionlog.OpenRotating(cfg.Decisions.File, cfg.Decisions.MaxBytes, cfg.Decisions.MaxFiles, dm)
		if err != nil {
			errs = append(errs, fmt.Errorf("decisions.file: %w", err))
		} else {
			g.closers = append(g.closers, f)
			g.dlog = decisionlog.NewWriter(f, dm, dlogLog)
		}
	}
	if g.dlog != nil {
		// The deny path hands records to a bounded queue; the file is
		// written on the queue's goroutine.
		g.queue = decisionlog.NewQueue(g.dlog, cfg.Decisions.QueueSize, dm)
		sinks = append(sinks, g.queue)
	}
	g.sink = decisionlog.Multi(sinks...)
	if len(errs) > 0 {
		g.close()
		return nil, errors.Join(errs...)
	}

	if cfg.Intercept.wanted(cfg) {
		if g.ca, err = newStagingCA(cfg.Intercept, eng, log.Named("stagingca"), g.reg); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.DNS.Listen != "" {
		if g.dns, err = dnsguard.New(cfg.DNS, eng, g.inv, g.sink, log.Named("dnsguard"), g.reg); err != nil {
			errs = append(errs, fmt.Errorf("dns: %w", err))
		}
	}
	if cfg.XDS.Listen != "" {
		var idOpts []grpc.ServerOption
		if g.identity, err = newIdentityGuard(cfg.XDS.Identity, g.inv, kc, log, g.reg); err != nil {
			errs = append(errs, err)
		} else if g.identity != nil {
			idOpts = g.identity.ServerOptions()
		}
		if g.enf, err = xds.NewEnforcer(eng, g.inv, cfg.XDS, log.Named("xds"), xds.NewMetrics(g.reg), g.xdsOptions()...); err != nil {
			errs = append(errs, fmt.Errorf("xds: %w", err))
		} else if g.xdsSrv, err = xds.NewServer(ctx, cfg.XDS, g.enf, log.Named("xds"), idOpts...); err != nil {
			errs = append(errs, fmt.Errorf("xds: %w", err))
		}
	}
	if cfg.Webhook.Enabled() {
		if h, err := inject.NewHandler(cfg.Webhook, inject.NewMetrics(g.reg), log.Named("inject"), g.injectOptions()...); err != nil {
			errs = append(errs, err)
		} else {
			g.optOutLog = inject.NewOptOutLog(0)
			h.SetHostNetworkOptOuts(catalogOptOuts(eng, time.Now), g.optOutLog)
			if g.webhook, err = inject.NewServer(cfg.Webhook, h, log.Named("inject")); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		g.close()
		return nil, errors.Join(errs...)
	}
	// Enforcers rebuild from the current policy and inventory whenever
	// either changes; they never evaluate policy themselves.
	rebuild := func() {
		g.permitIntercepts()
		if g.dns != nil {
			g.dns.Rebuild()
		}
		if g.enf != nil {
			g.enf.Rebuild()
		}
	}
	eng.Subscribe(rebuild)
	g.inv.Subscribe(rebuild)
	return g, nil
}

// close flushes the decision-record queue, then closes the files.
func (g *guard) close() {
	if g.queue != nil {
		_ = g.queue.Close()
	}
	for _, c := range g.closers {
		_ = c.Close()
	}
}

// isReady is /readyz: every listener bound, not in lame duck and, with the
// Kubernetes inventory, its first list of pods and namespaces applied
// (until then every caller would get the default environment's plan).
func (g *guard) isReady() bool {
	return g.ready.Load() && !g.lameDuck.Load() && (g.kube == nil || g.kube.Synced())
}

// listeners are the sockets serve binds, reported once bound.
type listeners struct {
	DNS      net.Addr
	XDS      net.Addr
	Admin    net.Addr
	AdminAPI net.Addr // nil when the APIs share Admin
	Webhook  net.Addr
}

// serve runs the guard until ctx ends (SIGTERM/SIGINT), then, in lame
// duck, keeps DNS, xDS and the webhook serving for shutdown.lame_duck with
// /readyz answering 503, then drains. bound, if not nil, receives the bound
// addresses once every enabled listener is up.
func serve(ctx context.Context, log *zap.Logger, cfg serveConfig, bound chan<- listeners) error {
	g, err := build(ctx, log, cfg)
	if err != nil {
		return err
	}
	defer g.close()
	// run outlives ctx by the lame-duck interval: every component serves
	// until it ends.
	run, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	var addrs listeners
	var group oklogrun.Group
	// undo releases what was bound when a later bind fails.
	var undo []func()
	defer func() {
		for _, f := range undo {
			f()
		}
	}()

	// Bind everything first: a port in use fails the start, fail closed,
	// and every listener that cannot bind is reported at once, each with
	// the flag and key that move it.
	var bindErrs []error
	if g.dns != nil {
		if err := g.dns.Start(run); err != nil {
			bindErrs = append(bindErrs, fmt.Errorf("dns: %w (move it with --dns-listen or dns.listen)", err))
		} else {
			addrs.DNS, _ = g.dns.Addr()
			stopDNS := func() {
				sctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.DrainTimeout)
				defer cancel()
				if err := g.dns.Shutdown(sctx); err != nil {
					log.Warn("dns shutdown", zap.Error(err))
				}
			}
			undo = append(undo, stopDNS)
			group.Add(func() error { <-run.Done(); return nil }, func(error) { stopDNS() })
		}
	}
	// bindServe binds addr for a server whose Serve(ctx, lis) returns once
	// ctx ends.
	bindServe := func(name, addr, move string, serveFn func(context.Context, net.Listener) error) net.Addr {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			bindErrs = append(bindErrs, fmt.Errorf("%s: listen %s: %w (move it with %s)", name, addr, err, move))
			return nil
		}
		undo = append(undo, func() { _ = lis.Close() })
		sctx, cancel := context.WithCancel(run)
		group.Add(func() error { return serveFn(sctx, lis) }, func(error) { cancel() })
		return lis.Addr()
	}
	if g.xdsSrv != nil {
		addrs.XDS = bindServe("xds", cfg.XDS.Listen, "--xds-listen or xds.listen", g.xdsSrv.Serve)
	}
	if g.webhook != nil {
		addrs.Webhook = bindServe("webhook", cfg.Webhook.Listen, "--webhook-listen or webhook.listen", g.webhook.Serve)
	}
	if cfg.Admin.Listen != "" {
		probes, api := g.adminHandlers()
		addrs.Admin = bindServe("admin", cfg.Admin.Listen, "--admin-listen or admin.listen", g.serveHTTP(probes))
		if api != nil {
			addrs.AdminAPI = bindServe("admin api", cfg.Admin.APIListen, "admin.api_listen", g.serveHTTP(api))
		}
	}
	if len(bindErrs) > 0 {
		return errors.Join(bindErrs...)
	}
	wctx, cancelWatch := context.WithCancel(run)
	group.Add(func() error { return g.engine.Watch(wctx) }, func(error) { cancelWatch() })
	if g.invw != nil {
		group.Add(func() error { return g.invw.Run(wctx) }, func(error) { cancelWatch() })
	}
	if g.kube != nil {
		// Run returns an error when the first list does not arrive within
		// sync_timeout: serve then exits and the pod restarts. Until it has
		// synced, /readyz is false and every caller gets the default
		// environment's plan, never a wider one.
		group.Add(func() error {
			if err := g.kube.Run(wctx); err != nil {
				return fmt.Errorf("inventory: %w", err)
			}
			return nil
		}, func(error) { cancelWatch() })
	}
	group.Add(g.reloadOnHUP(wctx), func(error) { cancelWatch() })
	g.runStagingCA(group.Add, wctx)
	// Lame duck: when ctx ends, /readyz turns 503 at once; everything keeps
	// serving for shutdown.lame_duck, then this actor returns and the group
	// stops (drains) the rest.
	group.Add(func() error {
		select {
		case <-ctx.Done():
		case <-run.Done():
			return nil
		}
		// A second SIGINT or SIGTERM (Ctrl-C twice under `make run`)
		// skips the rest of the interval.
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(again)
		g.lameDuck.Store(true)
		log.Info("stopping: lame duck, /readyz answers 503, still serving", zap.Duration("lame_duck", cfg.Shutdown.LameDuck))
		t := time.NewTimer(cfg.Shutdown.LameDuck)
		defer t.Stop()
		select {
		case <-t.C:
		case <-again:
			log.Info("second signal: lame duck cut short")
		case <-run.Done():
		}
		log.Info("lame duck over: draining")
		return nil
	}, func(error) { stopRun() })

	undo = nil // bound: from here on the group owns every listener
	g.ready.Store(true)
	fields := []zap.Field{
		zap.String("version", version),
		zap.String("policy_version", g.engine.Version()),
		zap.Stringer("dns", addrOrOff(addrs.DNS)),
		zap.Stringer("xds", addrOrOff(addrs.XDS)),
		zap.Stringer("admin", addrOrOff(addrs.Admin)),
		zap.Stringer("webhook", addrOrOff(addrs.Webhook)),
	}
	if addrs.AdminAPI != nil {
		fields = append(fields, zap.Stringer("admin_api", addrs.AdminAPI))
	}
	log.Info("egressguard serving", fields...)
	if bound != nil {
		bound <- addrs
	}
	err = group.Run()
	g.ready.Store(false)
	log.Info("egressguard stopped")
	return err
}

// reloadOnHUP reloads policy and inventory on SIGHUP; a failed reload keeps
// the last good state (the packages guarantee it) and is logged.
func (g *guard) reloadOnHUP(ctx context.Context) func() error {
	return func() error {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-hup:
				g.log.Info("SIGHUP: reloading policy and inventory")
				if err := g.engine.Reload(ctx); err != nil {
					g.log.Error("policy reload failed; the last good policy keeps serving", zap.Error(err))
				}
				if g.invw != nil {
					if err := g.invw.Reload(); err != nil {
						g.log.Error("inventory reload failed; the last good inventory keeps serving", zap.Error(err))
					}
				}
			}
		}
	}
}

type offAddr struct{}

func (offAddr) String() string { return "off" }

func addrOrOff(a net.Addr) fmt.Stringer {
	if a == nil {
		return offAddr{}
	}
	return a
}
