package inject

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/egressguard/egressguard/xds"
)

// Placeholders for the pod fields unknown at admission. They are rendered
// through xds.Bootstrap (which validates the node ID as an opaque string),
// then every "$" of the result is escaped as "$$" (the kubelet turns "$$"
// back into "$" and never expands an escaped reference), and only then are
// the placeholders replaced by $(VAR) references, which the kubelet expands
// from the sidecar's downward-API environment. Nothing else in the
// bootstrap can be expanded by accident.
const (
	placeholderPodIP     = "EGRESSGUARD0POD0IP0"
	placeholderPodName   = "EGRESSGUARD0POD0NAME0"
	placeholderNamespace = "EGRESSGUARD0POD0NAMESPACE0"
)

// SidecarNodeID is the node ID the sidecar announces, written with the
// kubelet's $(VAR) references to its downward-API environment. Once
// expanded it equals inventory/kube.NodeID(podIP, pod, namespace,
// clusterDomain):
//
//	sidecar~$(POD_IP)~$(POD_NAME).$(POD_NAMESPACE)~$(POD_NAMESPACE).svc.<clusterDomain>
func SidecarNodeID(clusterDomain string) string {
	return nodeID(ref(EnvPodIP), ref(EnvPodName), ref(EnvPodNamespace), clusterDomain)
}

func nodeID(ip, pod, ns, clusterDomain string) string {
	return "sidecar~" + ip + "~" + pod + "." + ns + "~" + ns + ".svc." + clusterDomain
}

func ref(env string) string { return "$(" + env + ")" }

// SidecarBootstrap renders the Envoy bootstrap (YAML) passed to the sidecar
// with --config-yaml: xds.Bootstrap's (ADS to cfg.XDSAddress, admin on
// 127.0.0.1:AdminPort, the outbound port in node metadata) plus a readiness
// listener on 0.0.0.0:ReadyPort that forwards GET /ready to the admin
// interface. The node ID is SidecarNodeID's, so the text holds $(VAR)
// references and is only valid once the kubelet has expanded them; any
// other "$" is escaped as "$$". With xdsCA (PEM) the sidecar reaches xDS
// over TLS, verifying the control plane's certificate against xdsCA
// (inline) for the host of cfg.XDSAddress.
func SidecarBootstrap(cfg Config, xdsCA []byte) (string, error) {
	id := nodeID(placeholderPodIP, placeholderPodName, placeholderNamespace, cfg.ClusterDomain)
	y, err := xds.Bootstrap(id, cfg.XDSAddress, xds.BootstrapOptions{
		OutboundPort:  cfg.OutboundPort,
		AdminPort:     AdminPort,
		ReadinessPort: ReadyPort,
		CAPEM:         xdsCA,
	})
	if err != nil {
		return "", fmt.Errorf("inject: sidecar bootstrap: %w", err)
	}
	return podRefs(string(y), "sidecar bootstrap", EnvPodIP, EnvPodName, EnvPodNamespace)
}

// readCA reads a PEM file that must hold CA certificates only.
func readCA(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rest, n := b, 0
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: PEM block %d is %q, want CERTIFICATE", path, n+1, blk.Type)
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, n+1, err)
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return b, nil
}

// ParseBootstrap decodes a bootstrap in YAML (or JSON) strictly and
// validates it, and every message packed in an Any inside it.
func ParseBootstrap(y []byte) (*bootstrapv3.Bootstrap, error) {
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(j, b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if err := xds.ValidateDeep(b, "bootstrap"); err != nil {
		return nil, err
	}
	return b, nil
}
