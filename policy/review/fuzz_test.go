package review

import (
	"bytes"
	"os"
	"testing"
)

// FuzzReadDecisions: the decision-log reader never panics, and every
// request it returns has a destination.
func FuzzReadDecisions(f *testing.F) {
	for _, p := range []string{"testdata/diff/decisions.jsonl", "testdata/example/decisions.jsonl"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"input":{"workload":{"environment":"qa"},"destination":{"ip":"::ffff:10.0.0.1","port":5432}}}`))
	f.Add([]byte("\n\n{}\n{\"input\":null}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, _ := ReadDecisions("fuzz.jsonl", bytes.NewReader(data))
		for _, r := range recs {
			if r.Destination.Host == "" && !r.Destination.IP.IsValid() {
				t.Fatalf("record without destination: %+v", r)
			}
			if r.Destination.IP.Is4In6() {
				t.Fatalf("IPv4-mapped address not unmapped: %v", r.Destination.IP)
			}
			_ = FormatDestination(r.Destination)
		}
	})
}
