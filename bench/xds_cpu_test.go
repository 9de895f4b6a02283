package bench

import (
	"syscall"
	"testing"
	"time"
)

// processCPU is the CPU time (user + system) this process has used. The
// benchmark machine is shared: wall time per op swings with other load,
// CPU time per op much less, so xds benchmarks report both.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter reports CPU milliseconds per op over a benchmark loop.
type cpuMeter struct {
	tb    testing.TB
	start time.Duration
}

func startCPU(tb testing.TB) *cpuMeter { return &cpuMeter{tb: tb, start: processCPU(tb)} }

func (m *cpuMeter) report(b *testing.B) {
	b.ReportMetric(float64(processCPU(b)-m.start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}
