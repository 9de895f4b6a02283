package kube

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/egressguard/egressguard/inventory"
)

// Conflict is one IP address claimed by two live pods at once: a transient
// state when a pod dies and its address is given to a new pod before the
// old pod object is gone. The newer pod (by creation timestamp) keeps the
// address; the older pod is left out of the snapshot.
type Conflict struct {
	IP netip.Addr
	// Kept and Dropped are "namespace/name" of the pods.
	Kept, Dropped string
}

// buildOptions are the parts of Options the builder needs.
type buildOptions struct {
	defaultEnv    string
	clusterDomain string
}

// podEntry is a pod that made it into the inventory.
type podEntry struct {
	pod  *corev1.Pod
	ips  []netip.Addr
	env  string
	name string // workload name
	// sidecar: the pod runs the egressguard sidecar (HasSidecar).
	sidecar bool
}

// buildWorkloads turns the informers' pods and namespaces into workloads,
// one per (namespace, workload name): its pods' addresses as /32 and /128
// prefixes and their sidecar node IDs. It is a pure function of its input;
// the order of pods does not matter.
//
// Pods are skipped when they run in the host network (their IP is the
// node's), are not Running or Pending, or have no IP. When two pods claim
// one IP the newer keeps it and the older is dropped (see Conflict).
//
// The workload's environment is the one of its newest pod; a pod whose
// environment differs from that (a rollout that changes the environment
// label) becomes a workload of its own named after the pod, so a workload
// never mixes environments. The workload's labels are the labels all its
// pods share with equal values: per-pod labels such as pod-template-hash
// drop out, and a label being changed by a rollout is absent until the
// rollout ends.
func buildWorkloads(pods []*corev1.Pod, namespaces []*corev1.Namespace, o buildOptions) ([]inventory.Workload, []Conflict) {
	nsByName := make(map[string]*corev1.Namespace, len(namespaces))
	for _, ns := range namespaces {
		nsByName[ns.Name] = ns
	}

	entries := make([]*podEntry, 0, len(pods))
	for _, p := range pods {
		if p == nil || p.Spec.HostNetwork {
			continue
		}
		if p.Status.Phase != corev1.PodRunning && p.Status.Phase != corev1.PodPending {
			continue
		}
		ips := PodIPs(p)
		if len(ips) == 0 {
			continue
		}
		entries = append(entries, &podEntry{
			pod:     p,
			ips:     ips,
			env:     Environment(p, nsByName[p.Namespace], o.defaultEnv),
			name:    WorkloadName(p),
			sidecar: HasSidecar(p),
		})
	}

	// Newest first: the first claim on an address wins.
	slices.SortFunc(entries, func(a, b *podEntry) int {
		if c := b.pod.CreationTimestamp.Compare(a.pod.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.pod.Namespace, b.pod.Namespace), cmp.Compare(a.pod.Name, b.pod.Name))
	})
	var conflicts []Conflict
	claimed := make(map[netip.Addr]*podEntry)
	live := entries[:0]
	for _, e := range entries {
		var lost []Conflict
		for _, ip := range e.ips {
			if winner, ok := claimed[ip]; ok {
				lost = append(lost, Conflict{IP: ip, Kept: podKey(winner.pod), Dropped: podKey(e.pod)})
			}
		}
		if len(lost) > 0 {
			conflicts = append(conflicts, lost...)
			continue
		}
		for _, ip := range e.ips {
			claimed[ip] = e
		}
		live = append(live, e)
	}

	// Group by (namespace, workload name); entries are newest first, so the
	// first pod of a group sets its environment.
	type group struct {
		w    inventory.Workload
		pods int
	}
	type key struct{ ns, name string }
	groups := make(map[key]*group)
	var order []key
	var strays []*podEntry
	for _, e := range live {
		k := key{e.pod.Namespace, e.name}
		g, ok := groups[k]
		if !ok {
			g = &group{w: inventory.Workload{
				Name:        e.name,
				Namespace:   e.pod.Namespace,
				Environment: e.env,
				Labels:      maps.Clone(e.pod.Labels),
				Sidecar:     e.sidecar,
			}}
			groups[k] = g
			order = append(order, k)
		} else if g.w.Environment != e.env {
			strays = append(strays, e)
			continue
		} else {
			maps.DeleteFunc(g.w.Labels, func(k, v string) bool {
				pv, ok := e.pod.Labels[k]
				return !ok || pv != v
			})
			// One pod without the sidecar makes the workload's DNS
			// answers for intercepted hosts unsafe: all or nothing.
			g.w.Sidecar = g.w.Sidecar && e.sidecar
		}
		addPod(&g.w, e, o.clusterDomain)
		g.pods++
	}
	for _, e := range strays {
		k := key{e.pod.Namespace, e.pod.Name}
		if _, taken := groups[k]; taken {
			// A workload already has this pod's name: leave the pod out
			// rather than fail the whole snapshot. Vanishingly rare.
			conflicts = append(conflicts, Conflict{IP: e.ips[0], Kept: k.ns + "/" + k.name, Dropped: podKey(e.pod)})
			continue
		}
		g := &group{w: inventory.Workload{
			Name:        e.pod.Name,
			Namespace:   e.pod.Namespace,
			Environment: e.env,
			Labels:      maps.Clone(e.pod.Labels),
			Sidecar:     e.sidecar,
		}}
		addPod(&g.w, e, o.clusterDomain)
		groups[k] = g
		order = append(order, k)
	}

	slices.SortFunc(order, func(a, b key) int {
		return cmp.Or(cmp.Compare(a.ns, b.ns), cmp.Compare(a.name, b.name))
	})
	out := make([]inventory.Workload, 0, len(order))
	for _, k := range order {
		w := groups[k].w
		slices.SortFunc(w.IPs, func(a, b netip.Prefix) int {
			return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
		})
		slices.Sort(w.NodeIDs)
		if len(w.Labels) == 0 {
			w.Labels = nil
		}
		out = append(out, w)
	}
	return out, conflicts
}

func addPod(w *inventory.Workload, e *podEntry, clusterDomain string) {
	for _, ip := range e.ips {
		w.IPs = append(w.IPs, netip.PrefixFrom(ip, ip.BitLen()))
	}
	w.NodeIDs = append(w.NodeIDs, NodeID(e.ips[0], e.pod.Name, e.pod.Namespace, clusterDomain))
}

func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }
