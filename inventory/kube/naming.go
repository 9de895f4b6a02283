package kube

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EnvironmentLabel is the label, on a pod or on its namespace, that names
// the pod's environment. The pod's label wins over its namespace's; a pod
// where neither is set gets the source's default environment.
const EnvironmentLabel = "egressguard.io/environment"

// Labels that name a workload when the pod has no owner reference, in order.
const (
	LabelAppName = "app.kubernetes.io/name"
	LabelApp     = "app"
)

// podTemplateHashLabel is the label the Deployment controller puts on the
// pods of each ReplicaSet it creates; the ReplicaSet is named
// "<deployment>-<pod-template-hash>".
const podTemplateHashLabel = "pod-template-hash"

// DefaultClusterDomain is the cluster DNS domain used in sidecar node IDs.
const DefaultClusterDomain = "cluster.local"

// NodeID is the Envoy node ID the injected sidecar of a pod announces, and
// the one this source puts in the inventory for that pod:
//
//	sidecar~<podIP>~<pod>.<namespace>~<namespace>.svc.<clusterDomain>
//
// podIP is the pod's primary IP (status.podIP, the first of
// status.podIPs), written as netip.Addr.String writes it (IPv6 in its
// compressed form, no brackets). This is the contract the sidecar
// injection (inject/) must follow when it renders the Envoy bootstrap:
// the bootstrap's node.id must be built from the same fields (through the
// downward API: status.podIP, metadata.name, metadata.namespace), or
// xds will treat the sidecar as an unknown (default-environment) caller.
func NodeID(podIP netip.Addr, pod, namespace, clusterDomain string) string {
	if clusterDomain == "" {
		clusterDomain = DefaultClusterDomain
	}
	return "sidecar~" + podIP.String() + "~" + pod + "." + namespace + "~" + namespace + ".svc." + clusterDomain
}

// WorkloadName names the workload a pod belongs to:
//
//   - owned by a ReplicaSet whose name is "<x>-<pod-template-hash>" (the
//     way the Deployment controller names them): x, the Deployment;
//     another ReplicaSet: its name;
//   - owned by a Job whose name is "<x>-<minutes since the epoch>" (the
//     way the CronJob controller names them, 8 or more digits): x, the
//     CronJob; another Job: its name;
//   - owned by a StatefulSet, DaemonSet or any other controller: its name;
//   - no owner: the pod's app.kubernetes.io/name label, else its app
//     label, else the pod's name.
//
// The controller owner reference is used when there is one, else the
// first owner reference. Naming from the owners' names (not from a lookup
// of the owners themselves) keeps the source to Pods and Namespaces, and
// to the RBAC that reads them; a Job named like a CronJob's job by hand is
// attributed to that CronJob name.
func WorkloadName(pod *corev1.Pod) string {
	if ref := ownerRef(pod.OwnerReferences); ref != nil && ref.Name != "" {
		switch ref.Kind {
		case "ReplicaSet":
			if h := pod.Labels[podTemplateHashLabel]; h != "" {
				if base, ok := strings.CutSuffix(ref.Name, "-"+h); ok && base != "" {
					return base
				}
			}
			return ref.Name
		case "Job":
			if i := strings.LastIndexByte(ref.Name, '-'); i > 0 && cronJobSuffix(ref.Name[i+1:]) {
				return ref.Name[:i]
			}
			return ref.Name
		default:
			return ref.Name
		}
	}
	if v := pod.Labels[LabelAppName]; v != "" {
		return v
	}
	if v := pod.Labels[LabelApp]; v != "" {
		return v
	}
	return pod.Name
}

func ownerRef(refs []metav1.OwnerReference) *metav1.OwnerReference {
	for i := range refs {
		if refs[i].Controller != nil && *refs[i].Controller {
			return &refs[i]
		}
	}
	if len(refs) > 0 {
		return &refs[0]
	}
	return nil
}

// cronJobSuffix reports whether s looks like the scheduled-time suffix the
// CronJob controller gives its Jobs: minutes since the Unix epoch, 8 digits
// or more since 1989.
func cronJobSuffix(s string) bool {
	if len(s) < 8 || len(s) > 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Environment is a pod's environment: its EnvironmentLabel, else its
// namespace's (ns may be nil), else def.
func Environment(pod *corev1.Pod, ns *corev1.Namespace, def string) string {
	if v := pod.Labels[EnvironmentLabel]; v != "" {
		return v
	}
	if ns != nil {
		if v := ns.Labels[EnvironmentLabel]; v != "" {
			return v
		}
	}
	return def
}

// PodIPs returns the pod's addresses from status.podIPs (status.podIP when
// the list is empty, as old API servers report it), primary first,
// skipping unparsable and duplicate entries.
func PodIPs(pod *corev1.Pod) []netip.Addr {
	var raw []string
	for _, p := range pod.Status.PodIPs {
		raw = append(raw, p.IP)
	}
	if len(raw) == 0 && pod.Status.PodIP != "" {
		raw = append(raw, pod.Status.PodIP)
	}
	out := make([]netip.Addr, 0, len(raw))
	for _, s := range raw {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.IsValid() {
			continue
		}
		a = a.Unmap().WithZone("")
		dup := false
		for _, b := range out {
			if a == b {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, a)
		}
	}
	return out
}

// PodRef names one pod, as a sidecar node ID (NodeID) does.
type PodRef struct {
	IP        netip.Addr
	Name      string
	Namespace string
}

// String is "namespace/name".
func (r PodRef) String() string { return r.Namespace + "/" + r.Name }

// ParseNodeID reads the pod a sidecar node ID names: the inverse of NodeID
// for any cluster domain. The namespace is the part after the last dot of
// the third field (namespaces cannot contain dots, pod names can) and must
// equal the namespace of the fourth field. ok is false for any other node
// ID, including one whose IP is not in netip.Addr.String's canonical form
// (NodeID never writes such an ID, so no inventory can hold it).
func ParseNodeID(id string) (ref PodRef, ok bool) {
	parts := strings.Split(id, "~")
	if len(parts) != 4 || parts[0] != "sidecar" {
		return PodRef{}, false
	}
	ip, err := netip.ParseAddr(parts[1])
	if err != nil || ip.Zone() != "" || ip.String() != parts[1] {
		return PodRef{}, false
	}
	i := strings.LastIndexByte(parts[2], '.')
	if i <= 0 || i == len(parts[2])-1 {
		return PodRef{}, false
	}
	name, ns := parts[2][:i], parts[2][i+1:]
	domain, found := strings.CutPrefix(parts[3], ns+".svc.")
	if !found || domain == "" {
		return PodRef{}, false
	}
	return PodRef{IP: ip, Name: name, Namespace: ns}, true
}

// The injection webhook's marker annotation and sidecar container name
// (inject.AnnotationInjected, inject.ProxyContainerName; inject imports
// this package, so they are restated here and a test keeps them equal).
const (
	annotationInjected = "egressguard.io/injected"
	proxyContainerName = "egressguard-proxy"
)

// HasSidecar reports whether pod runs the egressguard sidecar: it carries
// the webhook's injected marker and an egressguard-proxy container (the
// webhook injects a marked pod again when its containers differ from what
// it writes). A pod without both is treated as sidecar-less: fail closed.
func HasSidecar(pod *corev1.Pod) bool {
	if _, ok := pod.Annotations[annotationInjected]; !ok {
		return false
	}
	return slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == proxyContainerName })
}
