package policy

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

// Options configure an Engine.
type Options struct {
	// CatalogFiles are operator catalogs merged, in order, after the
	// embedded default catalog.
	CatalogFiles []string
	// PolicyDir holds operator Rego modules (*.rego) loaded beside the
	// default policy; *_test.rego files there are unit tests for RunTests.
	PolicyDir string
	// ReplaceDefaultPolicy drops the embedded Rego: PolicyDir must then
	// define data.egressguard.plan itself.
	ReplaceDefaultPolicy bool
	// NoDefaultCatalog skips the embedded catalog (tests, fully custom setups).
	NoDefaultCatalog bool
	// Now is the clock exceptions expire against (default time.Now).
	Now func() time.Time
	// Debounce is how long Watch waits for file events to settle (default 250ms).
	Debounce time.Duration

	// Settle is the interval between the two reads of the operator's files
	// that must agree (content, size, modification time) before a policy
	// is built from them; 0 reads twice back to back.
	Settle time.Duration
	// MaxShrink is the largest share (0..1) of the operator catalogs'
	// production entries (zones, CIDRs, provider endpoints) a reload may
	// remove; 0 means DefaultMaxShrink, 1 allows any change. Start-up is
	// not limited: restarting is how a deliberate large removal is loaded.
	MaxShrink float64
	// AllowEmpty accepts an operator catalog file, or a merged catalog,
	// with no production entry (by default an error: an emptied file is
	// far more often a half-written one than an intended policy).
	AllowEmpty bool
	// VerifyKey, when set, requires every operator catalog and Rego file
	// to carry a valid detached ed25519 signature (file + SignatureSuffix).
	VerifyKey ed25519.PublicKey
}

// Status is what an operator sees of the engine (admin endpoint, logs).
type Status struct {
	Version           string             `json:"version"`
	LoadedAt          time.Time          `json:"loaded_at"`
	LastReload        time.Time          `json:"last_reload"`
	LastError         string             `json:"last_error,omitempty"`
	ExpiredExceptions []ExpiredException `json:"expired_exceptions,omitempty"`
	ClassesCached     int                `json:"classes_cached"`
	// Signature is off (no key), verified, or failed (the last load's
	// check failed; the last good policy keeps serving).
	Signature string `json:"signature"`
	// ProductionEntries counts the serving operator catalogs' zones, CIDRs
	// and provider endpoints (what policy.max_shrink compares).
	ProductionEntries int `json:"production_entries"`
}

// Engine serves compiled plans for workload classes and reloads its policy
// (catalog + Rego) without stalling lookups. It is safe for concurrent use.
type Engine struct {
	opts    Options
	log     *zap.Logger
	metrics *Metrics
	cur     atomic.Pointer[state]

	integ    *integrityMetrics
	reloadMu sync.Mutex   // one reload at a time
	entries  atomic.Int64 // operator production entries of the serving policy
	// readStamps are the operator files' stamps at the last stable read
	// (Watch compares them once its watches are in place).
	readStamps atomic.Pointer[map[string]fileStamp]

	statusMu   sync.Mutex
	lastReload time.Time
	lastErr    error
	signature  string

	subsMu  sync.Mutex
	subs    map[uint64]func()
	nextSub uint64
}

// NewEngine loads the embedded defaults and the operator's files and
// compiles the policy. It fails closed: no valid policy, no engine.
func NewEngine(ctx context.Context, opts Options, log *zap.Logger, reg prometheus.Registerer) (*Engine, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 250 * time.Millisecond
	}
	if log == nil {
		log = zap.NewNop()
	}
	e := &Engine{opts: opts, log: log, metrics: NewMetrics(reg), integ: newIntegrityMetrics(reg), subs: map[uint64]func(){}}
	s, n, err := e.load(ctx)
	if err != nil {
		e.metrics.Reloads.WithLabelValues(reloadError).Inc()
		return nil, fmt.Errorf("policy: load: %w", err)
	}
	e.metrics.Reloads.WithLabelValues(reloadSuccess).Inc()
	e.entries.Store(int64(n))
	e.install(s)
	e.log.Info("policy loaded", zap.String("version", s.version),
		zap.Int("providers", len(s.catalog.Providers)), zap.Int("zones", len(s.catalog.Zones)),
		zap.Int("exceptions", len(s.catalog.Exceptions)), zap.Strings("class_labels", s.class.labels))
	return e, nil
}

// load reads the sources once they are stable, checks their signatures
// and that they are not empty, and builds a policy; n is the operator
// catalogs' production entry count. Integrity refusals are counted.
func (e *Engine) load(ctx context.Context) (s *state, n int, err error) {
	defer func() { e.noteIntegrity(err) }()
	src, err := e.readStable(ctx)
	if err != nil {
		return nil, 0, err
	}
	ops := src.operatorFiles(e.opts)
	if err := e.verifySignatures(ops); err != nil {
		return nil, 0, err
	}
	if n, err = operatorEntries(ops, e.opts.AllowEmpty); err != nil {
		return nil, 0, err
	}
	if s, err = buildState(ctx, src, e.opts.Now(), e.metrics); err != nil {
		return nil, 0, err
	}
	if ProductionEntries(s.catalog) == 0 && !e.opts.AllowEmpty {
		return nil, 0, &IntegrityError{Check: CheckEmpty, Msg: "the merged catalog names no production zone, CIDR or provider endpoint; set policy.allow_empty to load it"}
	}
	return s, n, nil
}

// noteIntegrity counts an integrity refusal and keeps the signature state.
func (e *Engine) noteIntegrity(err error) {
	var ie *IntegrityError
	if errors.As(err, &ie) {
		e.integ.refusals.WithLabelValues(ie.Check).Inc()
	}
	state := SignatureOff
	switch {
	case ie != nil && ie.Check == CheckSignature:
		state = SignatureFailed
	case e.opts.VerifyKey != nil && err == nil:
		state = SignatureVerified
	case e.opts.VerifyKey != nil:
		return // failed before the signatures were checked: keep the last state
	}
	if state == SignatureFailed {
		e.integ.signature.Set(0)
	} else {
		e.integ.signature.Set(1)
	}
	e.statusMu.Lock()
	e.signature = state
	e.statusMu.Unlock()
}

func (e *Engine) install(s *state) {
	e.cur.Store(s)
	e.statusMu.Lock()
	e.lastReload, e.lastErr = s.loadedAt, nil
	e.statusMu.Unlock()
	e.metrics.ExpiredExceptions.Set(float64(len(s.expired)))
	e.metrics.ClassesCached.Set(float64(s.plans.Len()))
	for _, x := range s.expired {
		e.log.Warn("policy exception expired and is ignored",
			zap.String("exception", x.ID), zap.String("file", x.File), zap.String("expires", x.Expires),
			zap.String("owner", x.Owner), zap.String("ticket", x.Ticket))
	}
}

// PlanFor returns the plan of w's workload class (computed once per class and
// policy version; a cache hit costs a map lookup).
func (e *Engine) PlanFor(w *inventory.Workload) (*plan.Plan, error) {
	if w == nil {
		return nil, errors.New("policy: PlanFor: nil workload")
	}
	return e.cur.Load().planFor(context.Background(), w)
}

// Decide is PlanFor followed by plan.Decide.
func (e *Engine) Decide(w *inventory.Workload, d plan.Destination) (plan.Decision, error) {
	p, err := e.PlanFor(w)
	if err != nil {
		return plan.Decision{}, err
	}
	return p.Decide(d), nil
}

// ClassKey is w's workload class as the plan cache keys it: the
// environment plus the labels (and name/namespace) the policy reads, in an
// unambiguous binary encoding. Workloads with the same ClassKey share one
// plan (and see the same Rego input). Use ClassDescription to show it.
func (e *Engine) ClassKey(w *inventory.Workload) string { return e.cur.Load().class.classKey(w) }

// ClassDescription renders w's workload class for explain and debugging,
// e.g. `staging{name="checkout", namespace="payments", label:app="web"}`.
// It is built from the same fields as ClassKey, in the same order.
func (e *Engine) ClassDescription(w *inventory.Workload) string {
	return e.cur.Load().class.classDescription(w)
}

// ClassLabels are the workload label keys the policy reads.
func (e *Engine) ClassLabels() []string { return slices.Clone(e.cur.Load().class.labels) }

// InterceptHosts is the sorted union of every intercepted host pattern
// (request-level rules, TLS sandbox redirects) of the serving policy's
// catalog, for all classes: the staging CA's name constraints.
func (e *Engine) InterceptHosts() []string { return slices.Clone(e.cur.Load().interceptHosts) }

// Version is the content hash of the serving policy.
func (e *Engine) Version() string { return e.cur.Load().version }

// Catalog is the serving merged catalog (expired exceptions removed). Do not
// modify it.
func (e *Engine) Catalog() *Catalog { return e.cur.Load().catalog }

// ExpiredExceptions lists the exceptions the serving policy ignores.
func (e *Engine) ExpiredExceptions() []ExpiredException {
	return slices.Clone(e.cur.Load().expired)
}

// Status reports the serving version and the last reload's outcome.
func (e *Engine) Status() Status {
	s := e.cur.Load()
	e.statusMu.Lock()
	st := Status{Version: s.version, LoadedAt: s.loadedAt, LastReload: e.lastReload, Signature: e.signature}
	if e.lastErr != nil {
		st.LastError = e.lastErr.Error()
	}
	e.statusMu.Unlock()
	st.ExpiredExceptions = slices.Clone(s.expired)
	st.ClassesCached = s.plans.Len()
	st.ProductionEntries = int(e.entries.Load())
	return st
}

// Subscribe registers fn to be called after each reload that changed the
// policy version. fn runs on the reloading goroutine; keep it short.
func (e *Engine) Subscribe(fn func()) (cancel func()) {
	e.subsMu.Lock()
	id := e.nextSub
	e.nextSub++
	e.subs[id] = fn
	e.subsMu.Unlock()
	return func() {
		e.subsMu.Lock()
		delete(e.subs, id)
		e.subsMu.Unlock()
	}
}

// Reload re-reads every source. On error the last good policy keeps serving
// and the error (naming file and line) is returned, logged and kept in
// Status. An unchanged policy keeps its plan cache.
func (e *Engine) Reload(ctx context.Context) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	now := e.opts.Now()
	s, n, err := e.load(ctx)
	if err == nil {
		err = Shrink{Before: int(e.entries.Load()), After: n}.Check(e.opts.MaxShrink)
		e.noteIntegrity(err)
	}
	if err != nil {
		e.metrics.Reloads.WithLabelValues(reloadError).Inc()
		e.statusMu.Lock()
		e.lastReload, e.lastErr = now, err
		e.statusMu.Unlock()
		e.log.Error("policy reload failed; the last good policy keeps serving",
			zap.String("version", e.Version()), zap.Error(err))
		return fmt.Errorf("policy: reload: %w", err)
	}
	if s.version == e.Version() {
		e.metrics.Reloads.WithLabelValues(reloadUnchanged).Inc()
		e.statusMu.Lock()
		e.lastReload, e.lastErr = now, nil
		e.statusMu.Unlock()
		return nil
	}
	old := e.Version()
	e.entries.Store(int64(n))
	e.install(s)
	e.metrics.Reloads.WithLabelValues(reloadSuccess).Inc()
	e.log.Info("policy reloaded", zap.String("version", s.version), zap.String("previous", old))
	e.subsMu.Lock()
	fns := make([]func(), 0, len(e.subs))
	for _, fn := range e.subs {
		fns = append(fns, fn)
	}
	e.subsMu.Unlock()
	for _, fn := range fns {
		fn()
	}
	return nil
}

// RegoDecision is data.egressguard.decision (or request_decision): the Rego
// reference answer.
type RegoDecision struct {
	Action    plan.Action    `json:"action"`
	Matched   plan.Action    `json:"matched_action"`
	Rule      string         `json:"rule"`
	Reason    string         `json:"reason"`
	Category  string         `json:"category"`
	Redirect  *plan.Redirect `json:"redirect,omitempty"`
	WouldDeny bool           `json:"would_deny"`
	// RequestRule and Credential are set by request_decision when the host
	// rule has request-level rules.
	RequestRule string `json:"request_rule,omitempty"`
	Credential  string `json:"credential,omitempty"`
}

// ErrNoReference means the policy defines no data.egressguard.decision.
var ErrNoReference = errors.New("policy: the policy defines no " + queryDecision)

// ReferenceDecision evaluates data.egressguard.decision in Rego for w's class
// and d. It is slow (milliseconds) and meant for tests and explain, never for
// enforcement.
func (e *Engine) ReferenceDecision(ctx context.Context, w *inventory.Workload, d plan.Destination) (RegoDecision, error) {
	return e.cur.Load().referenceDecision(ctx, w, d)
}

// ReferenceRequestDecision evaluates data.egressguard.request_decision in
// Rego for w's class, d and r (tests and explain only).
func (e *Engine) ReferenceRequestDecision(ctx context.Context, w *inventory.Workload, d plan.Destination, r HTTPRequest) (RegoDecision, error) {
	return e.cur.Load().referenceRequestDecision(ctx, w, d, r)
}

func (s *state) referenceDecision(ctx context.Context, w *inventory.Workload, d plan.Destination) (RegoDecision, error) {
	if s.decisionQ == nil {
		return RegoDecision{}, ErrNoReference
	}
	return s.evalReference(ctx, s.decisionQ, queryDecision, s.referenceInput(w, d))
}

func (s *state) referenceRequestDecision(ctx context.Context, w *inventory.Workload, d plan.Destination, r HTTPRequest) (RegoDecision, error) {
	if s.requestQ == nil {
		return RegoDecision{}, ErrNoReference
	}
	in := s.referenceInput(w, d)
	in.Insert(ast.StringTerm("request"), ast.NewTerm(r.regoInput()))
	return s.evalReference(ctx, s.requestQ, queryRequest, in)
}

func (s *state) evalReference(ctx context.Context, q *rego.PreparedEvalQuery, query string, in ast.Object) (RegoDecision, error) {
	rs, err := q.Eval(ctx, rego.EvalParsedInput(in))
	if err != nil {
		return RegoDecision{}, fmt.Errorf("policy: eval %s: %w", query, regoErrors(err))
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return RegoDecision{}, fmt.Errorf("policy: %s is undefined", query)
	}
	var out RegoDecision
	if err := decodeValue(rs[0].Expressions[0].Value, &out); err != nil {
		return RegoDecision{}, fmt.Errorf("policy: %s: %w", query, err)
	}
	return out, nil
}

// referenceInput is the Rego input of a reference decision: the class's
// workload and the destination in normal form.
func (s *state) referenceInput(w *inventory.Workload, d plan.Destination) ast.Object {
	_, in := s.class.classOf(w)
	obj := in.(ast.Object)
	host := d.Host
	if host != "" {
		if n, err := plan.NormalizeHost(host); err == nil {
			host = n
		}
	}
	dest := ast.NewObject(
		ast.Item(ast.StringTerm("host"), ast.StringTerm(host)),
		ast.Item(ast.StringTerm("port"), ast.IntNumberTerm(int(d.Port))),
		ast.Item(ast.StringTerm("protocol"), ast.StringTerm(d.Protocol)),
	)
	if d.IP.IsValid() {
		dest.Insert(ast.StringTerm("ip"), ast.StringTerm(plan.CanonicalAddr(d.IP, s.catalog.NAT64Prefixes()).String()))
	}
	obj.Insert(ast.StringTerm("destination"), ast.NewTerm(dest))
	return obj
}
