package kube

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/egressguard/egressguard/inventory"
)

// benchCluster is n pods in 1 + n/500 namespaces, 10 replicas per
// Deployment, dual-stack.
func benchCluster(n int) ([]*corev1.Pod, []*corev1.Namespace) {
	var nss []*corev1.Namespace
	for i := 0; i <= n/500; i++ {
		nss = append(nss, namespace(fmt.Sprintf("ns-%d", i), EnvironmentLabel, "staging"))
	}
	pods := make([]*corev1.Pod, 0, n)
	for i := 0; i < n; i++ {
		v4 := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		v6 := netip.AddrFrom16([16]byte{0xfd, 0, 14: byte(i >> 8), 15: byte(i)})
		v6 = netip.AddrFrom16(func() [16]byte { b := v6.As16(); b[13] = byte(i >> 16); return b }())
		dep := fmt.Sprintf("app-%d", i/10)
		pods = append(pods, pod(fmt.Sprintf("ns-%d", i/500), fmt.Sprintf("%s-h%d-%d", dep, i/10, i),
			[]string{v4.String(), v6.String()}, ownedBy("ReplicaSet", fmt.Sprintf("%s-h%d", dep, i/10)),
			withLabels(podTemplateHashLabel, fmt.Sprintf("h%d", i/10), LabelApp, dep, "team", "t")))
	}
	return pods, nss
}

// BenchmarkRebuild is the cost of one rebuild for a cluster of that many
// pods: "changed" builds the workloads and the snapshot (what a change that
// is published costs), "unchanged" builds the workloads and compares them
// with the last ones (what a no-op pod update costs).
func BenchmarkRebuild(b *testing.B) {
	o := buildOptions{defaultEnv: "staging", clusterDomain: DefaultClusterDomain}
	for _, n := range []int{1000, 10000} {
		pods, nss := benchCluster(n)
		last, _ := buildWorkloads(pods, nss, o)
		b.Run(fmt.Sprintf("changed/pods=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ws, conflicts := buildWorkloads(pods, nss, o)
				if len(conflicts) != 0 {
					b.Fatal(conflicts)
				}
				if _, err := inventory.NewSnapshot("staging", ws); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("unchanged/pods=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ws, _ := buildWorkloads(pods, nss, o)
				if !slices.EqualFunc(ws, last, workloadEqual) {
					b.Fatal("changed")
				}
			}
		})
	}
}
