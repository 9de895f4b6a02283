package inventory

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

const (
	docA   = "workloads:\n  - {name: a, environment: staging, ips: [10.0.0.1]}\n"
	docB   = "workloads:\n  - {name: b, environment: production, ips: [10.0.0.1]}\n"
	docBad = "workloads:\n  - {name: c, environment: staging, ips: [10.0.0.1], bogus: 1}\n"
)

// wait bounds every wait for an event so the test ends by itself; it is not
// a speed assertion.
const wait = 20 * time.Second

func writeFile(t *testing.T, path, doc string) {
	t.Helper()
	// Write-then-rename, as editors and config management do.
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(doc), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

func TestWatchReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "inventory.yaml")
	writeFile(t, path, docA)
	first, err := LoadFile(path)
	require.NoError(t, err)
	st := NewStore(first)

	changed := make(chan string, 16)
	st.Subscribe(func() { changed <- st.Current().ResolveIP(first.Workloads()[0].IPs[0].Addr()).Name })
	reloads := make(chan error, 16)
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	w := NewWatcher(path, st, zaptest.NewLogger(t), WatcherOptions{
		Debounce: 20 * time.Millisecond, Metrics: m,
		OnReload: func(err error) { reloads <- err },
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(wait):
			t.Error("watcher did not stop")
		}
	}()

	// The start-up reload sees the same content: no notification.
	requireReload(t, reloads, false)
	assert.Same(t, first, st.Current())

	writeFile(t, path, docB)
	assert.Equal(t, "b", requireChange(t, changed))
	good := st.Current()
	assert.Equal(t, "production", good.Workloads()[0].Environment)

	// A broken file is reported and the last good snapshot kept.
	writeFile(t, path, docBad)
	err = requireReload(t, reloads, true)
	assert.ErrorIs(t, err, ErrSyntax)
	assert.Contains(t, err.Error(), "inventory.yaml: malformed inventory file: line 2: field bogus not found in workload")
	assert.Same(t, good, st.Current())
	assert.Equal(t, err, w.LastError())

	// A removed file too.
	require.NoError(t, os.Remove(path))
	requireReload(t, reloads, true)
	assert.Same(t, good, st.Current())

	// A fixed file is picked up again.
	writeFile(t, path, docA)
	assert.Equal(t, "a", requireChange(t, changed))
	require.NoError(t, w.LastError())

	assert.GreaterOrEqual(t, metricValue(t, m.reloads.WithLabelValues(ResultSuccess)), 2.0)
	assert.GreaterOrEqual(t, metricValue(t, m.reloads.WithLabelValues(ResultFailure)), 2.0)
	assert.InDelta(t, 1.0, metricValue(t, m.workloads), 0)
	assert.Positive(t, metricValue(t, m.lastSuccess))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	require.NoError(t, err)
	assert.Empty(t, problems)
}

func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	require.NoError(t, m.Write(&out))
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}

// Kubernetes mounts a ConfigMap as a symlink to a "..data" symlink that is
// swapped atomically; the file itself sees no event.
func TestWatchConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	mk := func(name, doc string) {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, name), 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name, "inventory.yaml"), []byte(doc), 0o600))
	}
	mk("..v1", docA)
	require.NoError(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
	path := filepath.Join(dir, "inventory.yaml")
	require.NoError(t, os.Symlink("..data/inventory.yaml", path))

	first, err := LoadFile(path)
	require.NoError(t, err)
	st := NewStore(first)
	changed := make(chan string, 16)
	st.Subscribe(func() { changed <- st.Current().Workloads()[0].Name })
	reloads := make(chan error, 16)
	w := NewWatcher(path, st, zaptest.NewLogger(t), WatcherOptions{
		Debounce: 20 * time.Millisecond, OnReload: func(err error) { reloads <- err },
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	requireReload(t, reloads, false)

	mk("..v2", docB)
	require.NoError(t, os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	require.NoError(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	assert.Equal(t, "b", requireChange(t, changed))
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(wait):
		t.Error("watcher did not stop")
	}
}

func TestReloadDirect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inv.yaml")
	writeFile(t, path, docA)
	st := NewStore(nil)
	w := NewWatcher(path, st, zaptest.NewLogger(t), WatcherOptions{})
	require.NoError(t, w.Reload())
	assert.Equal(t, "a", st.Current().Workloads()[0].Name)
	writeFile(t, path, "workloads: [\n")
	require.Error(t, w.Reload())
	assert.Equal(t, "a", st.Current().Workloads()[0].Name)
}

func TestRunUnwatchableDir(t *testing.T) {
	w := NewWatcher(filepath.Join(t.TempDir(), "missing", "inv.yaml"), NewStore(nil), zaptest.NewLogger(t), WatcherOptions{})
	err := w.Run(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "inventory: watch ")
}

func requireReload(t *testing.T, reloads <-chan error, wantErr bool) error {
	t.Helper()
	for {
		select {
		case err := <-reloads:
			if (err != nil) == wantErr {
				return err
			}
			// A write can produce an intermediate event; wait for the
			// outcome we expect.
		case <-time.After(wait):
			t.Fatalf("no reload with error=%v within %s", wantErr, wait)
			return nil
		}
	}
}

func requireChange(t *testing.T, changed <-chan string) string {
	t.Helper()
	select {
	case name := <-changed:
		return name
	case <-time.After(wait):
		t.Fatalf("no inventory change within %s", wait)
		return ""
	}
}
