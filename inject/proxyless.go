package inject

import (
	"fmt"
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
	// EnvGRPCCallCreds enables grpc-go's call_creds in the bootstrap (gRFC
	// A97), set when the client presents its ServiceAccount token.
	EnvGRPCCallCreds = "GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS"
)

// With xDS over TLS (Config.XDSCAFile), a proxyless client gets one
// projected volume at XDSCredentialsDir: its pod-bound ServiceAccount
// token (audience Config.TokenAudience), which it presents as call
// credentials (jwt_token_file) so the control plane can prove its node ID
// with TokenReview, and the control plane's CA, which the webhook writes
// into the pod annotation AnnotationXDSCA and the downward API projects
// into a file (grpc-go reads its channel CA from a file).
const (
	AnnotationXDSCA   = "egressguard.io/xds-ca"
	XDSCredentialsDir = "/var/run/egressguard/xds"
	xdsCredentialsVol = "egressguard-xds"
	xdsTokenFile      = "token"
	xdsCAFile         = "ca.crt"
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
// container: xds.GRPCBootstrap's for cfg.XDSAddress and ProxylessNodeID
// (over TLS with the projected token as call credentials when
// cfg.XDSCAFile is set), "$" escaped for the kubelet and the pod references
// in place.
func ProxylessBootstrap(cfg Config) (string, error) {
	id := xds.ProxylessNodePrefix + strings.TrimPrefix(
		nodeID(placeholderPodIP, placeholderPodName, placeholderNamespace, cfg.ClusterDomain), "sidecar~")
	var o xds.GRPCBootstrapOptions
	if cfg.XDSCAFile != "" {
		o.CAFile, o.TokenFile = XDSCredentialsDir+"/"+xdsCAFile, XDSCredentialsDir+"/"+xdsTokenFile
	}
	b, err := xds.GRPCBootstrap(id, cfg.XDSAddress, o)
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
	var mounts []corev1.VolumeMount
	if len(i.xdsCA) > 0 {
		ours = append(ours, corev1.EnvVar{Name: EnvGRPCCallCreds, Value: "true"})
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[AnnotationXDSCA] = string(i.xdsCA)
		notes = append(notes, setVolume(pod, i.xdsCredentialsVolume())...)
		mounts = []corev1.VolumeMount{{Name: xdsCredentialsVol, MountPath: XDSCredentialsDir, ReadOnly: true}}
	}
	for c := range pod.Spec.Containers {
		ctr := &pod.Spec.Containers[c]
		if ctr.Name == ProxyContainerName {
			continue
		}
		notes = append(notes, setEnv(ctr, ours, "proxyless gRPC setting")...)
		notes = append(notes, setMounts(ctr, mounts)...)
	}
	return notes, nil
}

// xdsCredentialsVolume is the projected volume of a proxyless client's
// token and the control plane's CA.
func (i *Injector) xdsCredentialsVolume() corev1.Volume {
	exp := i.cfg.TokenExpirationSeconds
	return corev1.Volume{Name: xdsCredentialsVol, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: i.cfg.TokenAudience, ExpirationSeconds: &exp, Path: xdsTokenFile}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{
				Path:     xdsCAFile,
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.annotations['" + AnnotationXDSCA + "']"},
			}}}},
		},
	}}}
}
