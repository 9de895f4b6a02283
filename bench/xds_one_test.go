package bench

import (
	"testing"

	"github.com/egressguard/egressguard/policy/plan"
	"github.com/egressguard/egressguard/xds"
)

// BenchmarkXDSTranslateOneClass: one 2,000-rule plan (10 CIDR rules, a
// port-443 variant), translate + deep validation, no marshal.
func BenchmarkXDSTranslateOneClass(b *testing.B) {
	p, err := plan.Compile(plan.Spec{Default: plan.ActionAllow, Rules: baseRules(0)})
	if err != nil {
		b.Fatal(err)
	}
	cpu := startCPU(b)
	for b.Loop() {
		res, err := xds.TranslateSidecar(p, xds.NodeSettings{})
		if err != nil {
			b.Fatal(err)
		}
		if err := xds.Validate(res); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(res.Routes)), "route-configs")
	}
	cpu.report(b)
}
