package admin

import (
	"cmp"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/egressguard/egressguard/policy/decisionlog"
	"github.com/egressguard/egressguard/policy/plan"
)

// Buckets and BucketWidth shape the per-workload and per-rule time series:
// the last 15 minutes in 1-minute buckets, oldest first.
const (
	Buckets     = 15
	BucketWidth = time.Minute
)

// Default bounds of a Recorder's memory.
const (
	DefaultMaxAttempts = 1000
	DefaultMaxSeries   = 200
)

// Attempt is denied or redirected traffic aggregated by (workload,
// destination, rule).
type Attempt struct {
	Workload    string    `json:"workload"`
	Environment string    `json:"environment"`
	Destination string    `json:"destination"`
	Rule        string    `json:"rule"`
	Action      string    `json:"action"`
	Reason      string    `json:"reason"`
	Redirect    string    `json:"redirect,omitempty"`
	Via         string    `json:"via"`
	Count       uint64    `json:"count"`
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
}

// Series is the count of one workload's or rule's attempts: the total since
// the recorder started and the last Buckets minutes, oldest bucket first.
type Series struct {
	Name     string    `json:"name"`
	Total    uint64    `json:"total"`
	Recent   []uint64  `json:"recent"`
	LastSeen time.Time `json:"last_seen"`
}

// Counts is the /api/counts document.
type Counts struct {
	// Start is the start of the oldest bucket; bucket i covers
	// [Start+i*BucketWidth, Start+(i+1)*BucketWidth).
	Start         time.Time `json:"bucket_start"`
	BucketSeconds int       `json:"bucket_seconds"`
	Total         uint64    `json:"total"`
	Recent        []uint64  `json:"recent"`
	Workloads     []Series  `json:"workloads"`
	Rules         []Series  `json:"rules"`
}

type attemptKey struct{ workload, dest, rule string }

type series struct {
	total    uint64
	buckets  [Buckets]uint64
	epoch    int64 // minute index of buckets[epoch%Buckets]'s newest write
	lastSeen time.Time
}

// Recorder is a decisionlog.Sink that aggregates denied, redirected and
// would-deny decisions for the admin page, in bounded memory: at most
// maxAttempts aggregated attempts and maxSeries workloads and rules each
// (the least recently seen are dropped first). Safe for concurrent use.
type Recorder struct {
	now         func() time.Time
	maxAttempts int
	maxSeries   int

	mu        sync.Mutex
	attempts  map[attemptKey]*Attempt
	workloads map[string]*series
	rules     map[string]*series
	all       series
}

// NewRecorder returns a Recorder; maxAttempts and maxSeries <= 0 take the
// defaults. now may be nil (time.Now).
func NewRecorder(maxAttempts, maxSeries int, now func() time.Time) *Recorder {
	if maxAttempts <= 0 {
		maxAttempts = DefaultMaxAttempts
	}
	if maxSeries <= 0 {
		maxSeries = DefaultMaxSeries
	}
	if now == nil {
		now = time.Now
	}
	return &Recorder{now: now, maxAttempts: maxAttempts, maxSeries: maxSeries,
		attempts: map[attemptKey]*Attempt{}, workloads: map[string]*series{}, rules: map[string]*series{}}
}

// Log implements decisionlog.Sink. Plain allows are ignored.
func (r *Recorder) Log(rec decisionlog.Record) {
	d := rec.Result
	action := d.Action.String()
	switch {
	case d.WouldDeny:
		action = "would_deny"
	case d.Action == plan.ActionAllow:
		return
	}
	at := rec.Timestamp
	if at.IsZero() {
		at = r.now()
	}
	wl := workloadName(rec.Input.Workload)
	key := attemptKey{wl, destinationString(rec.Input.Destination), d.RuleID()}

	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.attempts[key]
	if a == nil {
		if len(r.attempts) >= r.maxAttempts {
			evictOldest(r.attempts, func(a *Attempt) time.Time { return a.LastSeen })
		}
		a = &Attempt{Workload: key.workload, Environment: rec.Input.Workload.Environment,
			Destination: key.dest, Rule: key.rule, FirstSeen: at}
		r.attempts[key] = a
	}
	a.Action, a.Reason, a.Via = action, d.Reason(), via(rec.Path)
	a.Redirect = ""
	if t := d.Target(); t != nil && d.Action == plan.ActionRedirect {
		a.Redirect = t.Host
		if t.Port != 0 {
			a.Redirect = net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
		}
	}
	a.Count++
	if at.After(a.LastSeen) {
		a.LastSeen = at
	}
	minute := at.Unix() / int64(BucketWidth/time.Second)
	r.add(r.workloads, wl, minute, at)
	r.add(r.rules, key.rule, minute, at)
	r.all.add(minute, at)
}

func (r *Recorder) add(m map[string]*series, name string, minute int64, at time.Time) {
	s := m[name]
	if s == nil {
		if len(m) >= r.maxSeries {
			evictOldest(m, func(s *series) time.Time { return s.lastSeen })
		}
		s = &series{epoch: minute}
		m[name] = s
	}
	s.add(minute, at)
}

func (s *series) add(minute int64, at time.Time) {
	s.advance(minute)
	s.total++
	if minute > s.epoch-Buckets { // a late record still inside the window
		s.buckets[minute%Buckets]++
	}
	if at.After(s.lastSeen) {
		s.lastSeen = at
	}
}

// advance clears the buckets between the last write and minute.
func (s *series) advance(minute int64) {
	if minute <= s.epoch {
		return
	}
	for m := max(s.epoch+1, minute-Buckets+1); m <= minute; m++ {
		s.buckets[m%Buckets] = 0
	}
	s.epoch = minute
}

// window returns the Buckets counts ending at minute, oldest first.
func (s *series) window(minute int64) []uint64 {
	out := make([]uint64, Buckets)
	for i := range Buckets {
		m := minute - Buckets + 1 + int64(i)
		if m <= s.epoch && m > s.epoch-Buckets && m >= 0 {
			out[i] = s.buckets[m%Buckets]
		}
	}
	return out
}

func evictOldest[K comparable, V any](m map[K]V, seen func(V) time.Time) {
	var victim K
	var oldest time.Time
	first := true
	for k, v := range m {
		if t := seen(v); first || t.Before(oldest) {
			victim, oldest, first = k, t, false
		}
	}
	if !first {
		delete(m, victim)
	}
}

// Attempts returns up to limit aggregated attempts (all when limit <= 0),
// the most recently seen first.
func (r *Recorder) Attempts(limit int) []Attempt {
	r.mu.Lock()
	out := make([]Attempt, 0, len(r.attempts))
	for _, a := range r.attempts {
		out = append(out, *a)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Attempt) int {
		if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.Workload, b.Workload), cmp.Compare(a.Destination, b.Destination), cmp.Compare(a.Rule, b.Rule))
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// Counts returns the per-workload and per-rule series, the busiest (in the
// window, then in total) first.
func (r *Recorder) Counts() Counts {
	now := r.now()
	minute := now.Unix() / int64(BucketWidth/time.Second)
	r.mu.Lock()
	defer r.mu.Unlock()
	c := Counts{
		Start:         time.Unix((minute-Buckets+1)*int64(BucketWidth/time.Second), 0).UTC(),
		BucketSeconds: int(BucketWidth / time.Second),
		Total:         r.all.total,
		Recent:        r.all.window(minute),
		Workloads:     collect(r.workloads, minute),
		Rules:         collect(r.rules, minute),
	}
	return c
}

func collect(m map[string]*series, minute int64) []Series {
	out := make([]Series, 0, len(m))
	for name, s := range m {
		out = append(out, Series{Name: name, Total: s.total, Recent: s.window(minute), LastSeen: s.lastSeen})
	}
	sum := func(v []uint64) (n uint64) {
		for _, x := range v {
			n += x
		}
		return n
	}
	slices.SortFunc(out, func(a, b Series) int {
		return cmp.Or(cmp.Compare(sum(b.Recent), sum(a.Recent)), cmp.Compare(b.Total, a.Total), cmp.Compare(a.Name, b.Name))
	})
	return out
}

func workloadName(w decisionlog.WorkloadRef) string {
	name := w.Name
	if w.Namespace != "" {
		name = w.Namespace + "/" + name
	}
	if w.Environment != "" {
		name += " (" + w.Environment + ")"
	}
	return name
}

func destinationString(d decisionlog.Destination) string {
	host := d.Host
	if host == "" && d.IP.IsValid() {
		host = d.IP.String()
	}
	if d.Port != 0 {
		host = net.JoinHostPort(host, strconv.Itoa(int(d.Port)))
	}
	return host
}

func via(path string) string {
	switch path {
	case decisionlog.PathDNS:
		return "dns"
	case decisionlog.PathXDS:
		return "xds"
	case decisionlog.PathEval:
		return "eval"
	}
	return path
}
