package inject

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/egressguard/egressguard/xds"
)

// AnnotationProxylessGRPC marks a pod ("true") whose application is a
// proxyless gRPC client (grpc-go's xds:/// channels): besides the sidecar,
// every application container gets an xDS bootstrap whose node ID the
// inventory resolves to the pod (ProxylessNodeID), so egressguard serves
// the client its pod's policy. Without it a client would need a node ID
// from somewhere else, and an unknown node gets the default (staging)
// plan: a production gRPC pod would be treated as staging.
const AnnotationProxylessGRPC = "egressguard.io/proxyless-grpc"

// Environment of a prepared application container. The pod fields come
// from the downward API under names of our own (an application may use
// POD_IP itself); the bootstrap refers to them as $(VAR), which the kubelet
// expands because they are defined before it.
const (
	EnvGRPCPodIP        = "EGRESSGUARD_POD_IP"
	EnvGRPCPodName      = "EGRESSGUARD_POD_NAME"
	EnvGRPCPodNamespace = "EGRESSGUARD_POD_NAMESPACE"
	// EnvGRPCBootstrapConfig is where grpc-go reads its bootstrap JSON.
	EnvGRPCBootstrapConfig = "GRPC_XDS_BOOTSTRAP_CONFIG"
	// EnvGRPCBootstrapFile names a bootstrap file; grpc-go prefers it to
	// EnvGRPCBootstrapConfig, so a prepared container has it set empty
	// (which also overrides one from envFrom).
	EnvGRPCBootstrapFile = "GRPC_XDS_BOOTSTRAP"
)

// grpcFeatureEnv are the grpc-go settings egressguard's configuration uses:
// the sandbox's :authority on redirects, and TLS sandboxes verified against
// the system roots with the sandbox's name as SNI (see the README's
// "Proxyless gRPC clients").
var grpcFeatureEnv = []string{
	"GRPC_EXPERIMENTAL_XDS_AUTHORITY_REWRITE",
	"GRPC_EXPERIMENTAL_XDS_SYSTEM_ROOT_CERTS",
	"GRPC_EXPERIMENTAL_XDS_SNI",
}

// ProxylessNodeID is the node ID a prepared application announces, with
// $(VAR) references the kubelet expands. Expanded, it is the pod's sidecar
// node ID (inventory/kube.NodeID) with xds.ProxylessNodePrefix in place of
// "sidecar~", which the enforcer resolves through the sidecar's ID: one
// workload, two nodes (the sidecar and the gRPC client), each served its
// kind.
func ProxylessNodeID(clusterDomain string) string {
	return xds.ProxylessNodePrefix + strings.TrimPrefix(
		nodeID(ref(EnvGRPCPodIP), ref(EnvGRPCPodName), ref(EnvGRPCPodNamespace), clusterDomain), "sidecar~")
}

// ProxylessBootstrap renders the bootstrap JSON of a prepared application
// container: xds.GRPCBootstrap's for cfg.XDSAddress and ProxylessNodeID,
// "$" escaped for the kubelet and the pod references in place.
func ProxylessBootstrap(cfg Config) (string, error) {
	id := xds.ProxylessNodePrefix + strings.TrimPrefix(
		nodeID(placeholderPodIP, placeholderPodName, placeholderNamespace, cfg.ClusterDomain), "sidecar~")
	b, err := xds.GRPCBootstrap(id, cfg.XDSAddress, xds.GRPCBootstrapOptions{})
	if err != nil {
		return "", fmt.Errorf("inject: proxyless bootstrap: %w", err)
	}
	return podRefs(string(b), "proxyless bootstrap", EnvGRPCPodIP, EnvGRPCPodName, EnvGRPCPodNamespace)
}

// podRefs escapes every "$" of a rendered bootstrap as "$$" (the kubelet
// turns "$$" back into "$" and never expands an escaped reference), checks
// that the node ID's placeholders appear as often as nodeID writes them,
// and replaces them by $(VAR) references to the given environment
// variables. Nothing else can be expanded by accident.
func podRefs(s, what, ipEnv, nameEnv, nsEnv string) (string, error) {
	s = strings.ReplaceAll(s, "$", "$$")
	for ph, want := range map[string]int{placeholderPodIP: 1, placeholderPodName: 1, placeholderNamespace: 2} {
		if n := strings.Count(s, ph); n != want {
			return "", fmt.Errorf("inject: %s: placeholder %s appears %d times, want %d", what, ph, n, want)
		}
	}
	return strings.NewReplacer(
		placeholderPodIP, ref(ipEnv),
		placeholderPodName, ref(nameEnv),
		placeholderNamespace, ref(nsEnv),
	).Replace(s), nil
}

// prepareProxyless gives every application container of a pod annotated
// AnnotationProxylessGRPC the proxyless bootstrap and grpc-go settings. A
// variable the container already sets is replaced (the bootstrap must be
// egressguard's, or the node ID would be the application's claim); each
// replacement is noted. It returns the notes; a pod without the annotation
// is left as it is.
func (i *Injector) prepareProxyless(pod *corev1.Pod) ([]string, error) {
	if !strings.EqualFold(strings.TrimSpace(pod.Annotations[AnnotationProxylessGRPC]), "true") {
		return nil, nil
	}
	bootstrap, err := ProxylessBootstrap(i.cfg)
	if err != nil {
		return nil, err
	}
	ours := []corev1.EnvVar{
		fieldEnv(EnvGRPCPodIP, "status.podIP"),
		fieldEnv(EnvGRPCPodName, "metadata.name"),
		fieldEnv(EnvGRPCPodNamespace, "metadata.namespace"),
		{Name: EnvGRPCBootstrapFile, Value: ""},
		{Name: EnvGRPCBootstrapConfig, Value: bootstrap},
	}
	for _, name := range grpcFeatureEnv {
		ours = append(ours, corev1.EnvVar{Name: name, Value: "true"})
	}
	var notes []string
	for c := range pod.Spec.Containers {
		ctr := &pod.Spec.Containers[c]
		if ctr.Name == ProxyContainerName {
			continue
		}
		kept := ctr.Env[:0:0]
		for _, e := range ctr.Env {
			if slices.ContainsFunc(ours, func(o corev1.EnvVar) bool { return o.Name == e.Name }) {
				notes = append(notes, fmt.Sprintf("container %s: replaced %s with egressguard's proxyless gRPC setting", ctr.Name, e.Name))
				continue
			}
			kept = append(kept, e)
		}
		ctr.Env = append(kept, ours...)
	}
	return notes, nil
}
