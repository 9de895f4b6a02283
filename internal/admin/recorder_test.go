package admin

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/policy/decisionlog"
	"github.com/egressguard/egressguard/policy/plan"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

var t0 = time.Date(2026, 11, 28, 10, 0, 30, 0, time.UTC)

func record(at time.Time, wl, host string, port uint16, action plan.Action, rule string, wouldDeny bool) decisionlog.Record {
	r := &plan.Rule{ID: rule, Action: action, Reason: "because " + rule}
	if action == plan.ActionRedirect {
		r.Redirect = &plan.Redirect{Host: "sandbox." + host, Port: port}
	}
	return decisionlog.Record{
		Timestamp: at,
		Path:      decisionlog.PathDNS,
		Input: decisionlog.Input{
			Workload:    decisionlog.WorkloadRef{Name: wl, Namespace: "shop", Environment: "staging"},
			Destination: decisionlog.Destination{Host: host, Port: port},
		},
		Result: plan.Decision{Action: action, Matched: action, Rule: r, WouldDeny: wouldDeny},
	}
}

func TestRecorderAggregates(t *testing.T) {
	c := &clock{t: t0}
	r := NewRecorder(0, 0, c.now)
	r.Log(record(t0, "checkout", "api.stripe.com", 0, plan.ActionDeny, "stripe", false))
	r.Log(record(t0.Add(time.Second), "checkout", "api.stripe.com", 0, plan.ActionDeny, "stripe", false))
	r.Log(record(t0.Add(2*time.Second), "checkout", "api-m.paypal.com", 443, plan.ActionRedirect, "paypal", false))
	r.Log(record(t0, "billing", "api.stripe.com", 0, plan.ActionAllow, "stripe-report", true))
	r.Log(record(t0, "billing", "www.example.org", 0, plan.ActionAllow, "default", false)) // plain allow: ignored

	got := r.Attempts(0)
	require.Len(t, got, 3)
	assert.Equal(t, "shop/checkout (staging)", got[0].Workload)
	assert.Equal(t, "api-m.paypal.com:443", got[0].Destination)
	assert.Equal(t, "redirect", got[0].Action)
	assert.Equal(t, "sandbox.api-m.paypal.com:443", got[0].Redirect)
	assert.Equal(t, "dns", got[0].Via)
	assert.Equal(t, "api.stripe.com", got[1].Destination)
	assert.Equal(t, uint64(2), got[1].Count)
	assert.Equal(t, t0, got[1].FirstSeen)
	assert.Equal(t, t0.Add(time.Second), got[1].LastSeen)
	assert.Equal(t, "because stripe", got[1].Reason)
	assert.Equal(t, "would_deny", got[2].Action)
	assert.Len(t, r.Attempts(1), 1)

	cnt := r.Counts()
	assert.Equal(t, uint64(4), cnt.Total)
	assert.Equal(t, 60, cnt.BucketSeconds)
	require.Len(t, cnt.Recent, Buckets)
	assert.Equal(t, uint64(4), cnt.Recent[Buckets-1])
	require.Len(t, cnt.Workloads, 2)
	assert.Equal(t, "shop/checkout (staging)", cnt.Workloads[0].Name)
	assert.Equal(t, uint64(3), cnt.Workloads[0].Total)
	require.Len(t, cnt.Rules, 3)
	assert.Equal(t, "stripe", cnt.Rules[0].Name)
}

func TestRecorderBuckets(t *testing.T) {
	c := &clock{t: t0}
	r := NewRecorder(0, 0, c.now)
	deny := func(at time.Time) { r.Log(record(at, "app", "x.example", 0, plan.ActionDeny, "r", false)) }
	deny(t0)
	c.add(3 * time.Minute)
	deny(c.now())
	deny(c.now())
	deny(t0.Add(time.Minute)) // late, still inside the window

	tests := []struct {
		name   string
		after  time.Duration
		recent map[int]uint64 // index -> count; others zero
		total  uint64
	}{
		{"now", 0, map[int]uint64{Buckets - 1: 2, Buckets - 3: 1, Buckets - 4: 1}, 4},
		{"ten minutes on", 10 * time.Minute, map[int]uint64{Buckets - 11: 2, Buckets - 13: 1, Buckets - 14: 1}, 4},
		{"out of the window", 20 * time.Minute, map[int]uint64{}, 4},
	}
	base := c.now()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.mu.Lock()
			c.t = base.Add(tt.after)
			c.mu.Unlock()
			cnt := r.Counts()
			want := make([]uint64, Buckets)
			for i, v := range tt.recent {
				want[i] = v
			}
			assert.Equal(t, want, cnt.Recent)
			assert.Equal(t, tt.total, cnt.Total)
			require.Len(t, cnt.Rules, 1)
			assert.Equal(t, want, cnt.Rules[0].Recent)
			assert.Equal(t, c.now().Truncate(time.Minute).Add(-(Buckets-1)*time.Minute), cnt.Start)
		})
	}
	// A write long after the last one clears the stale buckets.
	c.add(30 * time.Minute)
	deny(c.now())
	cnt := r.Counts()
	want := make([]uint64, Buckets)
	want[Buckets-1] = 1
	assert.Equal(t, want, cnt.Recent)
}

func TestRecorderBoundedMemory(t *testing.T) {
	c := &clock{t: t0}
	r := NewRecorder(10, 5, c.now)
	for i := range 100 {
		at := t0.Add(time.Duration(i) * time.Second)
		r.Log(record(at, fmt.Sprintf("app%d", i), fmt.Sprintf("h%d.example", i), 0, plan.ActionDeny, fmt.Sprintf("rule%d", i), false))
	}
	got := r.Attempts(0)
	require.Len(t, got, 10)
	assert.Equal(t, "h99.example", got[0].Destination, "the most recent are kept")
	assert.Equal(t, "h90.example", got[9].Destination)
	cnt := r.Counts()
	assert.Len(t, cnt.Workloads, 5)
	assert.Len(t, cnt.Rules, 5)
	assert.Equal(t, uint64(100), cnt.Total)
}

func TestRecorderIPDestination(t *testing.T) {
	r := NewRecorder(0, 0, nil)
	rec := record(time.Time{}, "app", "", 8443, plan.ActionDeny, "ip", false)
	rec.Input.Destination.IP = netip.MustParseAddr("2001:db8::1")
	r.Log(rec)
	got := r.Attempts(0)
	require.Len(t, got, 1)
	assert.Equal(t, "[2001:db8::1]:8443", got[0].Destination)
	assert.False(t, got[0].LastSeen.IsZero(), "a record without a timestamp is stamped now")
}

func TestRecorderConcurrent(t *testing.T) {
	r := NewRecorder(50, 20, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				r.Log(record(time.Now(), fmt.Sprintf("app%d", g), fmt.Sprintf("h%d.example", i%30), 443, plan.ActionDeny, "r", false))
				if i%50 == 0 {
					_ = r.Attempts(10)
					_ = r.Counts()
				}
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, uint64(1600), r.Counts().Total)
	assert.Len(t, r.Attempts(0), 50)
}
