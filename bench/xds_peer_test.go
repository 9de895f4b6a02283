package bench

import (
	"fmt"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/egressguard/egressguard/xds"
)

// BenchmarkXDSRebuildPeer is the peer of BenchmarkXDSRebuild, in the same
// run: the same 20 classes × 2,000 rules and 1,000 nodes, built the stock
// go-control-plane way: each class translated and validated on its own
// (TranslateSidecar + Validate, no sharing across classes), wrapped in a
// cachev3.Snapshot, checked with Consistent, and set for every node of the
// class on the stock SnapshotCache (which marshals per response later; its
// marshalling is not counted here, ours is).
func BenchmarkXDSRebuildPeer(b *testing.B) {
	plansA, plansB := makePlans(b, 0), makePlans(b, 1)
	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	cpu := startCPU(b)
	for i := range b.N {
		plans := plansA
		if i%2 == 0 {
			plans = plansB
		}
		for c := range 20 {
			p := plans.plans[fmt.Sprintf("class%d", c)]
			res, err := xds.TranslateSidecar(p, xds.NodeSettings{})
			if err != nil {
				b.Fatal(err)
			}
			if err := xds.Validate(res); err != nil {
				b.Fatal(err)
			}
			items := map[string][]types.Resource{}
			for _, l := range res.Listeners {
				items[resourcev3.ListenerType] = append(items[resourcev3.ListenerType], l)
			}
			for _, r := range res.Routes {
				items[resourcev3.RouteType] = append(items[resourcev3.RouteType], r)
			}
			for _, cl := range res.Clusters {
				items[resourcev3.ClusterType] = append(items[resourcev3.ClusterType], cl)
			}
			snap, err := cachev3.NewSnapshot(fmt.Sprintf("%d-%d", i, c), items)
			if err != nil {
				b.Fatal(err)
			}
			if err := snap.Consistent(); err != nil {
				b.Fatal(err)
			}
			for n := c; n < 1000; n += 20 {
				if err := cache.SetSnapshot(b.Context(), fmt.Sprintf("node-%d", n), snap); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	cpu.report(b)
}
