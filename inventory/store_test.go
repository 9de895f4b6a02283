package inventory

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStoreSubscribe(t *testing.T) {
	first := mustSnapshot(t, "", Workload{Name: "a", Environment: "qa"})
	st := NewStore(first)
	assert.Same(t, first, st.Current())

	var got []string
	cancelA := st.Subscribe(func() { got = append(got, "a:"+st.Current().Workloads()[0].Name) })
	st.Subscribe(func() { got = append(got, "b:"+st.Current().Workloads()[0].Name) })

	second := mustSnapshot(t, "", Workload{Name: "b", Environment: "qa"})
	st.Replace(second)
	assert.Same(t, second, st.Current())
	assert.Equal(t, []string{"a:b", "b:b"}, got)

	cancelA()
	cancelA() // idempotent
	st.Replace(first)
	assert.Equal(t, []string{"a:b", "b:b", "b:a"}, got)

	st.Replace(nil) // ignored, no notification
	assert.Same(t, first, st.Current())
	assert.Len(t, got, 3)
}

func TestNewStoreNil(t *testing.T) {
	for _, st := range []*Store{NewStore(nil), NewStatic(nil)} {
		require.NotNil(t, st.Current())
		assert.Equal(t, "staging", st.Current().Default().Environment)
		assert.Equal(t, 0, st.Current().Len())
	}
	var _ Source = NewStatic(nil)
}

func TestStoreConcurrent(t *testing.T) {
	a := mustSnapshot(t, "", Workload{Name: "a", Environment: "qa"})
	b := mustSnapshot(t, "", Workload{Name: "b", Environment: "qa"})
	st := NewStore(a)
	var notified atomic.Int64
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 200 {
				switch {
				case i == 0 && j%2 == 0:
					st.Replace(a)
				case i == 0:
					st.Replace(b)
				case i == 1:
					cancel := st.Subscribe(func() { notified.Add(1) })
					cancel()
				default:
					assert.NotNil(t, st.Current().Workloads())
				}
			}
		})
	}
	cancel := st.Subscribe(func() { notified.Add(1) })
	wg.Wait()
	cancel()
	assert.GreaterOrEqual(t, notified.Load(), int64(0))
}
