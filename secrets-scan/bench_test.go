package secretscan

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/egressguard/egressguard/secrets-scan/testdata/stagegen"
)

// BenchmarkScan measures single-core detection throughput (MB/s) over a
// generated corpus held in memory (bench/scan.sh measures the whole tool
// against gitleaks).
func BenchmarkScan(b *testing.B) {
	dir := b.TempDir()
	cat := stagegen.NewCatalog(1)
	if _, err := stagegen.Generate(dir, cat, stagegen.Options{Seed: 1, Bytes: 4 << 20}); err != nil {
		b.Fatal(err)
	}
	type file struct {
		name string
		data []byte
	}
	var files []file
	var total int64
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			data, _ := os.ReadFile(p)
			files = append(files, file{p, data})
			total += int64(len(data))
		}
		return nil
	})
	d, err := NewDetector(productionOf(cat))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, f := range files {
			d.Scan(f.name, f.data)
		}
	}
}
