package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/egressguard/egressguard/dnsguard"
	"github.com/egressguard/egressguard/inject"
	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/inventory/kube"
	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/policy/decisionlog"
	"github.com/egressguard/egressguard/xds"
)

// serveConfig is the --config file of `serve` and `validate`. Each section
// belongs to the package that owns it (dns, xds); the wiring-only sections
// (policy, inventory, admin, decisions) are defined here.
type serveConfig struct {
	Policy    policySection    `yaml:"policy"`
	Inventory inventorySection `yaml:"inventory"`
	DNS       dnsguard.Config  `yaml:"dns"`
	XDS       xds.Config       `yaml:"xds"`
	Webhook   inject.Config    `yaml:"webhook"`
	Intercept interceptSection `yaml:"intercept"`
	Admin     adminSection     `yaml:"admin"`
	Decisions decisionsSection `yaml:"decisions"`
	Log       logSection       `yaml:"log"`
	Shutdown  shutdownSection  `yaml:"shutdown"`
}

type shutdownSection struct {
	// LameDuck is how long DNS, xDS and the webhook keep serving after
	// SIGTERM while /readyz already answers 503 (load balancers and
	// kube-proxy take the pod out first); then they drain.
	LameDuck time.Duration `yaml:"lame_duck"`
	// DrainTimeout bounds the drain after the lame-duck interval.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

type logSection struct {
	// Level is debug, info, warn or error; Format is json or console.
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

type policySection struct {
	// Catalogs are operator catalogs merged over the embedded default.
	Catalogs []string `yaml:"catalogs"`
	// Dir holds extra Rego modules.
	Dir string `yaml:"dir"`
	// ReplaceDefault drops the embedded Rego policy.
	ReplaceDefault bool `yaml:"replace_default"`
	// Settle is the interval between the two reads of the policy files that
	// must agree before a reload uses them.
	Settle time.Duration `yaml:"settle"`
	// MaxShrink is the largest share (0..1) of the operator catalogs'
	// production entries a reload may remove; 1 turns the guard off.
	MaxShrink float64 `yaml:"max_shrink"`
	// AllowEmpty accepts catalogs that name no production entry.
	AllowEmpty bool `yaml:"allow_empty"`
	// SignatureKeyFile is an ed25519 public key (PEM); when set, every
	// operator catalog and Rego file needs a valid FILE.sig beside it.
	SignatureKeyFile string `yaml:"signature_key_file"`
}

type inventorySection struct {
	// Source is where workloads come from: "file" (File, the default when
	// File is set), "kubernetes" (pods and namespaces through client-go),
	// or "" with no File: every caller is the default (staging) workload.
	Source string `yaml:"source"`
	// File is a static inventory.
	File string `yaml:"file"`
	// Kubernetes configures source kubernetes.
	Kubernetes kubeSection `yaml:"kubernetes"`
}

// Inventory sources.
const (
	inventoryFile       = "file"
	inventoryKubernetes = "kubernetes"
)

// source is the effective inventory source.
func (s *inventorySection) source() string {
	if s.Source == "" && s.File != "" {
		return inventoryFile
	}
	return s.Source
}

type kubeSection struct {
	// Kubeconfig is a kubeconfig file; empty means the in-cluster service
	// account (then $KUBECONFIG when not in a cluster).
	Kubeconfig string `yaml:"kubeconfig"`
	// NodeName limits the inventory to pods on one node (a node-local
	// dnsguard: set it from the downward API's spec.nodeName).
	NodeName string `yaml:"node_name"`
	// ClusterDomain is used in sidecar node IDs.
	ClusterDomain string `yaml:"cluster_domain"`
	// DefaultEnvironment is the environment of pods and namespaces without
	// the egressguard.io/environment label, and of unknown callers.
	DefaultEnvironment string `yaml:"default_environment"`
	// SyncTimeout bounds the wait for the first list of pods and
	// namespaces; serve exits when it passes (the pod restarts).
	SyncTimeout time.Duration `yaml:"sync_timeout"`

	// client, when set (tests), is used instead of building one.
	client kubernetes.Interface
}

type adminSection struct {
	// Listen is the admin HTTP address: /healthz, /readyz and /metrics,
	// and the JSON APIs and page too unless APIListen is set. Empty
	// disables it.
	Listen string `yaml:"listen"`
	// APIListen, when set, serves the JSON APIs and the page on their own
	// address, so probes and metrics can be exposed without them.
	APIListen string `yaml:"api_listen"`
	// Auth guards the JSON APIs and the page. Without it they answer
	// loopback peers only (a process in the pod, kubectl port-forward).
	Auth adminAuthSection `yaml:"auth"`
	// MaxConnections caps the open connections of each admin listener.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

type adminAuthSection struct {
	// TokenFile holds a bearer token (at least 16 characters; a mounted
	// Secret), re-read when it changes.
	TokenFile string `yaml:"token_file"`
	// Kubernetes authenticates bearer tokens with TokenReview and
	// authorizes them with SubjectAccessReview (get adminapi.egressguard.io).
	Kubernetes bool `yaml:"kubernetes"`
	// Audiences are the TokenReview audiences (empty: the API server's).
	Audiences []string `yaml:"audiences"`
}

type decisionsSection struct {
	// File receives decision records as JSON lines, rotated by size; "-"
	// means stdout; empty keeps them in memory only (admin API).
	File     string `yaml:"file"`
	MaxBytes int64  `yaml:"max_bytes"`
	MaxFiles int    `yaml:"max_files"`
	// Recent is how many records the admin API keeps in memory.
	Recent int `yaml:"recent"`
	// QueueSize bounds the records waiting for the file; past it they are
	// dropped and counted, never waited for on the deny path.
	QueueSize int `yaml:"queue_size"`
}

// defaultServeConfig is what `egressguard serve` runs with no arguments.
func defaultServeConfig() serveConfig {
	c := serveConfig{
		DNS:      dnsguard.Defaults(),
		XDS:      xds.Defaults(),
		Webhook:  inject.Defaults(),
		Admin:    adminSection{Listen: "127.0.0.1:9901", MaxConnections: 256, IdleTimeout: time.Minute},
		Policy:   policySection{Settle: 200 * time.Millisecond, MaxShrink: policy.DefaultMaxShrink},
		Shutdown: shutdownSection{LameDuck: 5 * time.Second, DrainTimeout: 10 * time.Second},
		Inventory: inventorySection{Kubernetes: kubeSection{
			ClusterDomain:      kube.DefaultClusterDomain,
			DefaultEnvironment: inventory.DefaultEnvironment,
			SyncTimeout:        kube.DefaultSyncTimeout,
		}},
		Decisions: decisionsSection{MaxBytes: 64 << 20, MaxFiles: 5, Recent: 1000, QueueSize: decisionlog.DefaultQueueSize},
		Log:       logSection{Level: "info", Format: "console"},
	}
	c.DNS.Listen = "127.0.0.1:5353"
	c.XDS.Listen = "127.0.0.1:18000"
	c.Intercept.Enabled = true
	// The init container runs this very binary's image.
	c.Webhook.InitImage = inject.DefaultInitImageRepository + ":" + version
	return c
}

// loadServeConfig decodes path strictly over the defaults, then applies
// --set overrides (section.key=value; the value is YAML, so lists and
// durations work: dns.upstreams=[10.0.0.2], dns.upstream_timeout=2s).
// Errors name the file and line (or the --set) and the key path.
func loadServeConfig(path string, sets ...string) (serveConfig, error) {
	c := defaultServeConfig()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		if err := decodeConfigYAML(path, b, &c); err != nil {
			return c, err
		}
	}
	for _, s := range sets {
		if err := applySet(&c, s); err != nil {
			return c, err
		}
	}
	return c, nil
}

// validate checks every section, enabled or not, and reports all problems.
func (c *serveConfig) validate() error {
	var errs []error
	if c.DNS.Listen != "" {
		if err := c.DNS.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("dns: %w", err))
		}
	}
	if c.XDS.Listen != "" {
		if err := c.XDS.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("xds: %w", err))
		}
	}
	errs = append(errs, c.Admin.validate()...)
	errs = append(errs, c.Policy.validate()...)
	if c.Shutdown.LameDuck < 0 || c.Shutdown.DrainTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown: lame_duck %s must not be negative and drain_timeout %s must be positive", c.Shutdown.LameDuck, c.Shutdown.DrainTimeout))
	}
	if c.Decisions.QueueSize < 1 {
		errs = append(errs, fmt.Errorf("decisions.queue_size: must be at least 1"))
	}
	errs = append(errs, c.Inventory.validate()...)
	errs = append(errs, c.Intercept.validate()...)
	if err := c.Webhook.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Decisions.File != "" && c.Decisions.File != "-" {
		if c.Decisions.MaxBytes < 4096 {
			errs = append(errs, fmt.Errorf("decisions.max_bytes: %d is below the minimum of 4096", c.Decisions.MaxBytes))
		}
		if c.Decisions.MaxFiles < 1 {
			errs = append(errs, fmt.Errorf("decisions.max_files: must be at least 1"))
		}
	}
	if _, err := newLogger(c.Log.Level, c.Log.Format); err != nil {
		errs = append(errs, fmt.Errorf("log: %w", err))
	}
	if c.Decisions.Recent < 0 {
		errs = append(errs, fmt.Errorf("decisions.recent: must not be negative"))
	}
	return errors.Join(errs...)
}

func (a *adminSection) validate() []error {
	var errs []error
	for key, addr := range map[string]string{"admin.listen": a.Listen, "admin.api_listen": a.APIListen} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	if a.APIListen != "" && a.APIListen == a.Listen {
		errs = append(errs, fmt.Errorf("admin.api_listen: %q is admin.listen too: leave it empty to serve both on one listener", a.APIListen))
	}
	if a.Auth.TokenFile != "" && a.Auth.Kubernetes {
		errs = append(errs, errors.New("admin.auth: token_file and kubernetes are both set: choose one"))
	}
	if a.MaxConnections < 1 {
		errs = append(errs, fmt.Errorf("admin.max_connections: must be at least 1"))
	}
	if a.IdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("admin.idle_timeout: must be positive"))
	}
	return errs
}

func (p *policySection) validate() []error {
	var errs []error
	if p.Settle < 0 || p.Settle > 10*time.Second {
		errs = append(errs, fmt.Errorf("policy.settle: %s is outside 0..10s", p.Settle))
	}
	if p.MaxShrink <= 0 || p.MaxShrink > 1 {
		errs = append(errs, fmt.Errorf("policy.max_shrink: %v is outside (0, 1] (1 turns the guard off)", p.MaxShrink))
	}
	return errs
}

func (s *inventorySection) validate() []error {
	var errs []error
	switch s.source() {
	case "":
	case inventoryFile:
		if s.File == "" {
			errs = append(errs, errors.New("inventory.file: required with inventory.source file"))
		}
	case inventoryKubernetes:
		if s.File != "" {
			errs = append(errs, fmt.Errorf("inventory.file: %q is set, but inventory.source is kubernetes: use one source", s.File))
		}
		k := s.Kubernetes
		if k.ClusterDomain == "" || strings.ContainsAny(k.ClusterDomain, " /:") {
			errs = append(errs, fmt.Errorf("inventory.kubernetes.cluster_domain: %q is not a DNS domain", k.ClusterDomain))
		}
		if k.DefaultEnvironment == "" {
			errs = append(errs, errors.New("inventory.kubernetes.default_environment: must not be empty"))
		}
		if k.SyncTimeout <= 0 {
			errs = append(errs, fmt.Errorf("inventory.kubernetes.sync_timeout: %s must be positive", k.SyncTimeout))
		}
	default:
		errs = append(errs, fmt.Errorf("inventory.source: %q is not one of file, kubernetes", s.Source))
	}
	return errs
}
