package decisionlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/policy/plan"
)

func record(i int) Record {
	return NewRecord(PathDNS, checkout, plan.Destination{Host: fmt.Sprintf("h%06d.prod.example.com", i), Protocol: "dns"},
		plan.Decision{Action: plan.ActionDeny, Matched: plan.ActionDeny, Rule: prodRule})
}

func TestWriterConcurrent(t *testing.T) {
	var buf bytes.Buffer
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	w := NewWriter(&buf, m, nil)
	const goroutines, each = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				w.Log(record(g*each + i))
			}
		})
	}
	wg.Wait()
	assert.Equal(t, uint64(goroutines*each), w.Status().Written)
	assert.Zero(t, w.Status().Errors)
	seen := map[string]bool{}
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var r struct {
			Input struct {
				Destination struct{ Host string } `json:"destination"`
			} `json:"input"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), "line %q", sc.Text())
		seen[r.Input.Destination.Host] = true
	}
	assert.Len(t, seen, goroutines*each)
	assert.InDelta(t, float64(goroutines*each), counterValue(t, m.written), 0)
	lint(t, reg)
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriterCountsErrors(t *testing.T) {
	m := NewMetrics(nil)
	w := NewWriter(failingWriter{}, m, nil)
	w.Log(record(1))
	w.Log(record(2))
	assert.Equal(t, uint64(2), w.Status().Errors)
	assert.Zero(t, w.Status().Written)
	assert.Equal(t, "disk full", w.Status().LastError)
	assert.InDelta(t, 2.0, counterValue(t, m.errors.WithLabelValues(ErrorKindWrite)), 0)
}

func TestRotatingFileBound(t *testing.T) {
	const maxBytes, maxFiles, n = 4096, 3, 500
	dir := t.TempDir()
	path := filepath.Join(dir, "decisions.log")
	m := NewMetrics(nil)
	rf, err := OpenRotating(path, maxBytes, maxFiles, m)
	require.NoError(t, err)
	w := NewWriter(rf, m, nil)
	for i := range n {
		w.Log(record(i))
	}
	require.NoError(t, rf.Close())
	require.Zero(t, w.Status().Errors, "%v", w.Status().LastError)
	assert.Positive(t, counterValue(t, m.rotated))

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	names := make([]string, 0, len(entries))
	var total int64
	for _, e := range entries {
		names = append(names, e.Name())
		info, err := e.Info()
		require.NoError(t, err)
		assert.LessOrEqual(t, info.Size(), int64(maxBytes), e.Name())
		total += info.Size()
	}
	assert.ElementsMatch(t, []string{"decisions.log", "decisions.log.1", "decisions.log.2"}, names)
	assert.LessOrEqual(t, total, int64(maxBytes*maxFiles))

	// The files hold the newest records, oldest file first, in order and
	// whole: every line parses.
	var hosts []string
	for _, name := range []string{"decisions.log.2", "decisions.log.1", "decisions.log"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		require.True(t, strings.HasSuffix(string(b), "\n"), name)
		for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			var r Record
			require.NoError(t, json.Unmarshal([]byte(line), &struct {
				Input *Input `json:"input"`
			}{&r.Input}), "%s: %q", name, line)
			hosts = append(hosts, r.Input.Destination.Host)
		}
	}
	require.NotEmpty(t, hosts)
	assert.Equal(t, fmt.Sprintf("h%06d.prod.example.com", n-1), hosts[len(hosts)-1])
	for i := 1; i < len(hosts); i++ {
		assert.Less(t, hosts[i-1], hosts[i])
	}
}

func TestRotatingFileReopenAndStale(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "d.log")
	require.NoError(t, os.WriteFile(path, []byte("old\n"), 0o600))
	for _, stale := range []string{"d.log.1", "d.log.5", "d.log.9", "d.log.x", "d.log.05"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, stale), []byte("stale\n"), 0o600))
	}
	rf, err := OpenRotating(path, MinFileBytes, 2, nil)
	require.NoError(t, err)
	_, err = rf.Write([]byte("new\n"))
	require.NoError(t, err)
	require.NoError(t, rf.Close())

	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "old\nnew\n", string(b), "appends to an existing file")
	for _, name := range []string{"d.log.5", "d.log.9"} {
		assert.NoFileExists(t, filepath.Join(dir, name), "beyond maxFiles")
	}
	for _, name := range []string{"d.log.1", "d.log.x", "d.log.05"} {
		assert.FileExists(t, filepath.Join(dir, name), "not ours to remove")
	}
	_, err = rf.Write([]byte("after close\n"))
	assert.ErrorIs(t, err, os.ErrClosed)
}

func TestRotatingFileSingleFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.log")
	rf, err := OpenRotating(path, MinFileBytes, 1, nil)
	require.NoError(t, err)
	defer rf.Close()
	line := []byte(strings.Repeat("x", 1000) + "\n")
	for range 10 {
		_, err := rf.Write(line)
		require.NoError(t, err)
	}
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.LessOrEqual(t, info.Size(), int64(MinFileBytes))
	assert.NoFileExists(t, path+".1")
}

func TestRotatingFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		path     string
		maxBytes int64
		maxFiles int
		want     string
	}{
		{"small", filepath.Join(dir, "a.log"), 100, 2, "below the minimum"},
		{"no files", filepath.Join(dir, "a.log"), MinFileBytes, 0, "at least 1"},
		{"missing dir", filepath.Join(dir, "no", "a.log"), MinFileBytes, 2, "decisionlog: open "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenRotating(tc.path, tc.maxBytes, tc.maxFiles, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	rf, err := OpenRotating(filepath.Join(dir, "b.log"), MinFileBytes, 2, nil)
	require.NoError(t, err)
	defer rf.Close()
	_, err = rf.Write(make([]byte, MinFileBytes+1))
	assert.ErrorIs(t, err, ErrTooLarge)
}

func TestRotatingFileConcurrent(t *testing.T) {
	dir := t.TempDir()
	rf, err := OpenRotating(filepath.Join(dir, "c.log"), 8192, 4, nil)
	require.NoError(t, err)
	w := NewWriter(rf, nil, nil)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 300 {
				w.Log(record(g*1000 + i))
			}
		})
	}
	wg.Wait()
	require.NoError(t, rf.Close())
	assert.Zero(t, w.Status().Errors)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 4)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		assert.LessOrEqual(t, len(b), 8192)
		for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			assert.True(t, json.Valid([]byte(line)), "%s: %q", e.Name(), line)
		}
	}
}

func TestRing(t *testing.T) {
	r := NewRing(3)
	assert.Empty(t, r.Recent(5))
	for i := range 5 {
		r.Log(record(i))
	}
	hosts := func(rs []Record) []string {
		var out []string
		for _, x := range rs {
			out = append(out, x.Input.Destination.Host)
		}
		return out
	}
	assert.Equal(t, []string{"h000004.prod.example.com", "h000003.prod.example.com", "h000002.prod.example.com"}, hosts(r.Recent(0)))
	assert.Equal(t, []string{"h000004.prod.example.com", "h000003.prod.example.com"}, hosts(r.Recent(2)))
	assert.Len(t, r.Recent(10), 3)
	assert.Equal(t, uint64(5), r.Total())
	assert.Len(t, NewRing(0).buf, 1)
}

func TestRingConcurrent(t *testing.T) {
	r := NewRing(16)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				if g == 0 {
					assert.LessOrEqual(t, len(r.Recent(8)), 8)
					continue
				}
				r.Log(record(i))
			}
		})
	}
	wg.Wait()
	assert.Len(t, r.Recent(0), 16)
	assert.Equal(t, uint64(1500), r.Total())
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.Counter.GetValue()
}

func lint(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	require.NoError(t, err)
	assert.Empty(t, problems)
}

func BenchmarkWriter(b *testing.B) {
	rf, err := OpenRotating(filepath.Join(b.TempDir(), "bench.log"), 1<<20, 2, nil)
	require.NoError(b, err)
	defer rf.Close()
	w := NewWriter(rf, nil, nil)
	rec := record(1)
	b.ReportAllocs()
	for b.Loop() {
		w.Log(rec)
	}
}

// BenchmarkWriterPeer is the peer for BenchmarkWriter: json.Marshal and one
// unlocked os.File.Write per record, no rotation, in the same run.
func BenchmarkWriterPeer(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "peer.log"))
	require.NoError(b, err)
	defer f.Close()
	rec := record(1)
	b.ReportAllocs()
	for b.Loop() {
		line, err := json.Marshal(rec)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Write(append(line, '\n')); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriterBuffer measures encoding alone (an in-memory io.Writer).
func BenchmarkWriterBuffer(b *testing.B) {
	w := NewWriter(discard{}, nil, nil)
	rec := record(1)
	b.ReportAllocs()
	for b.Loop() {
		w.Log(rec)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
