// Package inject is egressguard's mutating admission webhook: it adds the
// Envoy sidecar (egressguard-proxy), the traffic-capture init container
// (egressguard-init) and a DNS configuration pointing at dnsguard to the
// pods of namespaces labelled egressguard.io/inject=enabled.
//
// The pieces, from the inside out:
//
//   - Injector.Inject: a pure function from a Pod to the injected Pod and a
//     Decision (injected, or skipped with a reason);
//   - CreatePatch: the JSON patch from the original Pod to the injected
//     one, checked by applying it with a second JSON-patch library;
//   - Handler: AdmissionReview (admission.k8s.io/v1) over HTTP;
//   - Server: HTTPS with certificate rotation, /mutate and /healthz.
package inject

import (
	"errors"

	"github.com/egressguard/egressguard/xds"
)

// Names shared with the chart, inventory/kube and the capture rules.
const (
	// AnnotationInject on a pod opts it out of injection when its value is
	// "false", "disabled" or "no" (case-insensitive). Namespaces opt in
	// with the label egressguard.io/inject=enabled, matched by the
	// webhook's namespaceSelector: the handler never sees namespace labels.
	AnnotationInject = "egressguard.io/inject"
	// NamespaceLabel is the namespace label (value "enabled") the chart's
	// namespaceSelector matches.
	NamespaceLabel = "egressguard.io/inject"
	// AnnotationInjected is the marker written on injected pods; its value
	// is the sidecar image.
	AnnotationInjected = "egressguard.io/injected"

	// ProxyContainerName is the Envoy sidecar.
	ProxyContainerName = "egressguard-proxy"
	// InitContainerName installs the traffic-capture rules.
	InitContainerName = "egressguard-init"

	// DefaultProxyUID is the UID and GID of the sidecar.
	DefaultProxyUID = 1337
	// DefaultOutboundPort is the sidecar's outbound (captured) port.
	DefaultOutboundPort = xds.DefaultOutboundPort
	// AdminPort is Envoy's admin port, bound to 127.0.0.1 only.
	AdminPort = 15000
	// ReadyPort is the sidecar's readiness port on the pod IP: a static
	// listener that forwards GET /ready (and nothing else) to the admin
	// interface. The kubelet probes the pod IP, never the pod's loopback,
	// so the admin port itself cannot be probed.
	ReadyPort = 15021
	// DNSPort is excluded from capture (dnsguard is reached directly).
	DNSPort = 53
)

// Environment variables of the sidecar, filled from the downward API and
// referenced as $(NAME) in its arguments (the kubelet expands them).
const (
	EnvPodIP        = "POD_IP"
	EnvPodName      = "POD_NAME"
	EnvPodNamespace = "POD_NAMESPACE"
)

func joinErrs(errs []error) error { return errors.Join(errs...) }
