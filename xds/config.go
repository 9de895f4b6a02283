package xds

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/egressguard/egressguard/xds/nodeauth"
)

// Config is the "xds" section of egressguard's configuration.
type Config struct {
	// Listen is the gRPC address of ADS and the separate xDS services.
	Listen string `yaml:"listen" json:"listen"`
	// TLS enables TLS (and, with client_ca_file, mTLS) on Listen.
	TLS TLSConfig `yaml:"tls" json:"tls"`
	// OutboundPort is the sidecar's outbound port when the node's metadata
	// does not name one.
	OutboundPort uint32 `yaml:"outbound_port" json:"outbound_port"`
	// AccessLogPath is where sidecars write their decision log lines.
	AccessLogPath string `yaml:"access_log_path" json:"access_log_path"`
	// ListenerFiltersTimeout bounds the sidecar's protocol sniffing.
	ListenerFiltersTimeout time.Duration `yaml:"listener_filters_timeout" json:"listener_filters_timeout"`
	// MaxStreams bounds concurrently open xDS streams; more are refused with
	// RESOURCE_EXHAUSTED.
	MaxStreams int `yaml:"max_streams" json:"max_streams"`
	// MaxTargetsPerNode bounds the listener names one proxyless node may ask for.
	MaxTargetsPerNode int `yaml:"max_targets_per_node" json:"max_targets_per_node"`
	// Identity is how a stream's node ID is proven (package nodeauth).
	Identity nodeauth.Config `yaml:"identity" json:"identity"`
}

// TLSConfig is the server side of the xDS connection.
type TLSConfig struct {
	CertFile     string `yaml:"cert_file" json:"cert_file"`
	KeyFile      string `yaml:"key_file" json:"key_file"`
	ClientCAFile string `yaml:"client_ca_file" json:"client_ca_file"`
}

// Enabled reports whether TLS is configured.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{
		Listen:                 "127.0.0.1:18000",
		OutboundPort:           DefaultOutboundPort,
		AccessLogPath:          DefaultAccessLogPath,
		ListenerFiltersTimeout: time.Second,
		MaxStreams:             10000,
		MaxTargetsPerNode:      256,
		Identity:               nodeauth.Defaults(),
	}
}

// Validate reports every problem of the section at once, with field paths.
func (c Config) Validate() error {
	var errs []error
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		errs = append(errs, fmt.Errorf("xds.listen: %q is not host:port", c.Listen))
	}
	if c.OutboundPort == 0 || c.OutboundPort > 65535 {
		errs = append(errs, fmt.Errorf("xds.outbound_port: %d is not a port", c.OutboundPort))
	}
	if c.AccessLogPath == "" {
		errs = append(errs, errors.New("xds.access_log_path: must not be empty"))
	}
	if c.ListenerFiltersTimeout <= 0 {
		errs = append(errs, fmt.Errorf("xds.listener_filters_timeout: %s must be positive", c.ListenerFiltersTimeout))
	}
	if c.MaxStreams <= 0 {
		errs = append(errs, fmt.Errorf("xds.max_streams: %d must be positive", c.MaxStreams))
	}
	if c.MaxTargetsPerNode <= 0 {
		errs = append(errs, fmt.Errorf("xds.max_targets_per_node: %d must be positive", c.MaxTargetsPerNode))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("xds.tls: cert_file and key_file go together"))
	}
	if c.TLS.ClientCAFile != "" && !c.TLS.Enabled() {
		errs = append(errs, errors.New("xds.tls.client_ca_file: needs cert_file and key_file"))
	}
	if err := c.Identity.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
