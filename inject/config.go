package inject

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/egressguard/egressguard/inject/capture"
)

// DefaultSidecarImage is the Envoy image injected unless sidecar_image says
// otherwise. Pin it: the sidecar must speak the xDS API version go-control-plane
// serves (github.com/envoyproxy/go-control-plane/envoy v1.40.0).
const DefaultSidecarImage = "envoyproxy/envoy:v1.40.0"

// DefaultInitImageRepository is the repository of the egressguard image. The
// init container must run the same egressguard version as the control plane,
// which this package does not know: Defaults leaves init_image empty and the
// caller (cmd, the chart) sets it, e.g. DefaultInitImageRepository+":"+version.
const DefaultInitImageRepository = "ghcr.io/egressguard/egressguard"

// Config is the "webhook" section of egressguard's configuration (egressguard
// serve). Start from Defaults, decode YAML on top of it strictly, then
// Validate.
type Config struct {
	// Listen is the HTTPS address of the webhook, host:port; empty turns the
	// webhook off.
	Listen string `yaml:"listen" json:"listen"`
	// CertFile and KeyFile are the PEM certificate and key of the webhook.
	// They are re-read when they change on disk (cert-manager rotates them).
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`
	// SidecarImage is the Envoy image of the egressguard-proxy container.
	SidecarImage string `yaml:"sidecar_image" json:"sidecar_image"`
	// InitImage is the egressguard image the egressguard-init container runs
	// (`egressguard iptables --apply ...`).
	InitImage string `yaml:"init_image" json:"init_image"`
	// XDSAddress is where sidecars fetch their configuration, host:port.
	XDSAddress string `yaml:"xds_address" json:"xds_address"`
	// XDSCAFile is the PEM CA that signed the control plane's xDS serving
	// certificate (xds.tls). Set, injected sidecars and proxyless gRPC
	// clients reach xDS over TLS and verify the certificate for the host of
	// XDSAddress (the control-plane Service's DNS name): the sidecar with
	// the CA inline in its bootstrap, a proxyless client with it projected
	// into a file from the pod annotation AnnotationXDSCA. Empty: plaintext
	// xDS (make run on loopback).
	XDSCAFile string `yaml:"xds_ca_file" json:"xds_ca_file"`
	// TokenAudience and TokenExpirationSeconds are those of the projected
	// ServiceAccount token a proxyless gRPC client presents on its xDS
	// stream (xds.identity.audience; the API server issues no token
	// shorter than 600 seconds and the kubelet renews it at 80%). Used
	// only with XDSCAFile: grpc-go sends call credentials over TLS alone.
	TokenAudience          string `yaml:"token_audience" json:"token_audience"`
	TokenExpirationSeconds int64  `yaml:"token_expiration_seconds" json:"token_expiration_seconds"`
	// DNSServer is the IP of dnsguard (the fixed clusterIP of its Service,
	// internalTrafficPolicy Local) that injected pods use as their only
	// nameserver. Required when Listen is set.
	DNSServer string `yaml:"dns_server" json:"dns_server"`
	// OutboundPort is the sidecar port captured outbound TCP is redirected to.
	OutboundPort uint32 `yaml:"outbound_port" json:"outbound_port"`
	// ProxyUID is the UID and GID the sidecar runs as; its traffic is not
	// captured. Must not be 0 (every root process would escape capture).
	ProxyUID int64 `yaml:"proxy_uid" json:"proxy_uid"`
	// ExcludeCIDRs are destinations never captured by the sidecar (IPv4 and
	// IPv6 prefixes, canonical form).
	ExcludeCIDRs []string `yaml:"exclude_cidrs" json:"exclude_cidrs"`
	// ClusterDomain is the cluster's DNS domain, used in DNS search paths and
	// in the sidecar's node ID.
	ClusterDomain string `yaml:"cluster_domain" json:"cluster_domain"`
	// SidecarCPU and SidecarMemory are the sidecar's resource requests. Limits
	// are set (equal to the requests) only on pods whose every container
	// already has limits equal to requests, so injection keeps a Guaranteed
	// pod Guaranteed and otherwise does not cap Envoy.
	SidecarCPU    string `yaml:"sidecar_cpu" json:"sidecar_cpu"`
	SidecarMemory string `yaml:"sidecar_memory" json:"sidecar_memory"`
	// Mode is "enforce" (the default) or "report". In enforce mode pods
	// that could bypass the sidecar (host network without the audited
	// opt-out, containers that could leave traffic capture) are refused;
	// in report mode they are admitted and each finding is recorded as a
	// would-deny (warning, audit annotation, metric, log).
	Mode string `yaml:"mode" json:"mode"`
}

// Admission modes (Config.Mode).
const (
	ModeEnforce = "enforce"
	ModeReport  = "report"
)

// Defaults returns the configuration used when a field is not set.
func Defaults() Config {
	return Config{
		CertFile:               "/etc/egressguard/webhook/tls.crt",
		KeyFile:                "/etc/egressguard/webhook/tls.key",
		SidecarImage:           DefaultSidecarImage,
		XDSAddress:             "egressguard.egressguard.svc:18000",
		TokenAudience:          "egressguard",
		TokenExpirationSeconds: 600,
		OutboundPort:           DefaultOutboundPort,
		ProxyUID:               DefaultProxyUID,
		ClusterDomain:          "cluster.local",
		SidecarCPU:             "100m",
		SidecarMemory:          "128Mi",
		Mode:                   ModeEnforce,
	}
}

// Enabled reports whether the webhook is to be served.
func (c Config) Enabled() bool { return c.Listen != "" }

// Validate reports every problem of the section at once, each naming its
// field (webhook.<field>). Fields that only matter when serving (cert and
// key files, init image, dns_server) are required only when Listen is set;
// the others are checked even when the webhook is off.
func (c Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("webhook.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	on := c.Enabled()
	if on {
		if host, port, err := net.SplitHostPort(c.Listen); err != nil {
			add("listen", "%q is not host:port: %v", c.Listen, err)
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			add("listen", "%q: invalid port %q", c.Listen, port)
		} else if host != "" && !validHost(host) {
			add("listen", "%q: %q is not an IP address or host name", c.Listen, host)
		}
		if c.CertFile == "" {
			add("cert_file", "required when webhook.listen is set")
		}
		if c.KeyFile == "" {
			add("key_file", "required when webhook.listen is set")
		}
		if c.DNSServer == "" {
			add("dns_server", "required when webhook.listen is set: the IP of the dnsguard Service injected pods resolve through")
		}
		if c.InitImage == "" {
			add("init_image", "required when webhook.listen is set: the egressguard image (%s:<version>) the init container runs", DefaultInitImageRepository)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		add("cert_file", "cert_file and key_file go together")
	}
	if err := checkImage(c.SidecarImage); err != nil {
		add("sidecar_image", "%v", err)
	}
	if c.InitImage != "" {
		if err := checkImage(c.InitImage); err != nil {
			add("init_image", "%v", err)
		}
	}
	if host, port, err := net.SplitHostPort(c.XDSAddress); err != nil {
		add("xds_address", "%q is not host:port: %v", c.XDSAddress, err)
	} else if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		add("xds_address", "%q: invalid port %q", c.XDSAddress, port)
	} else if !validHost(host) {
		add("xds_address", "%q: %q is not an IP address or host name", c.XDSAddress, host)
	}
	if c.TokenAudience == "" {
		add("token_audience", "must not be empty")
	}
	if c.TokenExpirationSeconds < 600 || c.TokenExpirationSeconds > 1<<32 {
		add("token_expiration_seconds", "%d: the API server issues projected tokens of 600 seconds to 2^32", c.TokenExpirationSeconds)
	}
	if c.DNSServer != "" {
		if a, err := netip.ParseAddr(c.DNSServer); err != nil || a.Zone() != "" {
			add("dns_server", "%q is not an IP address (the dnsguard Service clusterIP; host names would be resolved through DNS itself)", c.DNSServer)
		}
	}
	switch {
	case c.OutboundPort == 0 || c.OutboundPort > 65535:
		add("outbound_port", "%d is not a port (1-65535)", c.OutboundPort)
	case c.OutboundPort == AdminPort || c.OutboundPort == ReadyPort:
		add("outbound_port", "%d is taken by the sidecar (admin %d, readiness %d)", c.OutboundPort, AdminPort, ReadyPort)
	}
	if c.ProxyUID <= 0 || c.ProxyUID > 2147483647 {
		add("proxy_uid", "%d must be between 1 and 2147483647 (0 would exempt every root process in the pod from capture)", c.ProxyUID)
	}
	// The init container parses these with capture.ParsePrefix; the same
	// check here keeps a bad entry from failing every pod at start.
	for i, s := range c.ExcludeCIDRs {
		if _, err := capture.ParsePrefix(s); err != nil {
			add(fmt.Sprintf("exclude_cidrs[%d]", i), "%v", err)
		}
	}
	if errs := validation.IsDNS1123Subdomain(c.ClusterDomain); len(errs) > 0 {
		add("cluster_domain", "%q is not a DNS name: %s", c.ClusterDomain, strings.Join(errs, "; "))
	}
	for _, q := range []struct{ field, v string }{{"sidecar_cpu", c.SidecarCPU}, {"sidecar_memory", c.SidecarMemory}} {
		r, err := resource.ParseQuantity(q.v)
		switch {
		case err != nil:
			add(q.field, "%q is not a Kubernetes quantity (e.g. 100m, 128Mi): %v", q.v, err)
		case r.Sign() <= 0:
			add(q.field, "%q must be positive", q.v)
		}
	}
	if c.Mode != ModeEnforce && c.Mode != ModeReport {
		add("mode", "%q: want %s or %s", c.Mode, ModeEnforce, ModeReport)
	}
	return errors.Join(errs...)
}

func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return len(validation.IsDNS1123Subdomain(strings.TrimSuffix(h, "."))) == 0
}

// checkImage rejects what can never be an image reference; the registry
// decides the rest.
func checkImage(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("%q contains white space", s)
	}
	return nil
}
