package secretscan

import (
	"bytes"
	"cmp"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// Detector holds the compiled rules and production description. It is
// immutable and safe for concurrent use.
type Detector struct {
	c        *compiled
	anch     *anchors
	rules    []*Rule
	ruleAnch []ruleAnchors // per rule: its anchors' bits in anch
	urlRule  ruleAnchors   // the database-URL rule's
	keyRules []*Rule       // rules selected by the setting's name, in order

	rule        map[string]*Rule
	hasAccounts bool
	keys        keyCache
}

// keyCache remembers what setting names mean: the same names (DB_PASSWORD,
// api_key, ...) recur in every file. Bounded; safe for concurrent use.
type keyCache struct {
	mu sync.RWMutex
	m  map[string]keyEntry
}

type keyEntry struct {
	kc    keyClass
	lower string
}

const keyCacheMax = 1 << 16

func (c *keyCache) classify(buf *[]byte, key []byte) keyClass {
	c.mu.RLock()
	e, ok := c.m[string(key)]
	c.mu.RUnlock()
	if ok {
		*buf = append((*buf)[:0], e.lower...)
		return e.kc
	}
	kc := classifyKey(buf, key)
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]keyEntry)
	}
	if len(c.m) < keyCacheMax {
		c.m[string(key)] = keyEntry{kc: kc, lower: string(*buf)}
	}
	c.mu.Unlock()
	return kc
}

// NewDetector compiles a production description. Every problem in it is
// reported at once.
func NewDetector(p Production) (*Detector, error) {
	c, err := compile(p)
	if err != nil {
		return nil, err
	}
	d := &Detector{c: c, rules: Rules(), rule: map[string]*Rule{}, hasAccounts: len(c.accounts) > 0}
	// One automaton over every rule's anchors; each rule keeps the bits of
	// its own.
	var pats []string
	bit := map[string]uint64{}
	bits := func(ss []string) uint64 {
		var m uint64
		for _, a := range ss {
			if _, ok := bit[a]; !ok {
				if len(pats) == 64 {
					panic("secretscan: more than 64 distinct anchors")
				}
				bit[a] = 1 << uint(len(pats))
				pats = append(pats, a)
			}
			m |= bit[a]
		}
		return m
	}
	for _, r := range d.rules {
		d.rule[r.ID] = r
		d.ruleAnch = append(d.ruleAnch, ruleAnchors{own: bits(r.anchors), test: bits(r.testAnchors)})
		if r.byKey != nil {
			d.keyRules = append(d.keyRules, r)
		}
	}
	d.anch = newAnchors(pats)
	d.urlRule = d.ruleAnch[slices.Index(d.rules, d.rule[RuleDatabaseURL])]
	return d, nil
}

// ruleAnchors are a rule's bits in the detector's anchor mask.
type ruleAnchors struct{ own, test uint64 }

func (a ruleAnchors) hit(m uint64) bool { return a.own&m != 0 }

// Rules lists the detector's rules.
func (d *Detector) Rules() []*Rule { return d.rules }

// Scan scans one file's content; name picks the decoder and is the File of
// findings and notices.
func (d *Detector) Scan(name string, content []byte) ([]Finding, []Notice) {
	st := &fileState{d: d, path: name, scopes: make([]scopeInfo, 1, 16)}
	st.scopes[0].root = true
	if isBinary(content) {
		return nil, []Notice{{File: name, Reason: "binary file (NUL byte in the first 8 KiB)", Skipped: true}}
	}
	content = bytes.TrimPrefix(content, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(content) {
		st.notices = append(st.notices, Notice{File: name, Reason: "invalid UTF-8; scanned as raw bytes"})
	}
	decode(st, formatFor(name, content), content, 0)
	st.finish()
	return d.postprocess(st, content), st.notices
}

// postprocess applies inline allow comments, drops duplicates and sorts.
func (d *Detector) postprocess(st *fileState, content []byte) []Finding {
	fs := st.findings
	if len(fs) == 0 {
		return nil
	}
	slices.SortFunc(fs, compareFindings)
	fs = slices.CompactFunc(fs, func(a, b Finding) bool {
		return a.Line == b.Line && a.Rule == b.Rule && a.Fingerprint == b.Fingerprint
	})
	lines := lineIndex(content)
	for i := range fs {
		cands := []int{fs[i].Line, fs[i].Line - 1}
		// A {name, value} list entry: the comment goes above "- name:".
		if up := fs[i].Line - 1; up >= 1 && up <= len(lines) && bytes.HasPrefix(bytes.TrimLeft(lines[up-1], " \t"), []byte("- name:")) {
			cands = append(cands, up-1)
		}
		for _, ln := range cands {
			if ln < 1 || ln > len(lines) {
				continue
			}
			text := lines[ln-1]
			j := bytes.Index(text, []byte("egressguard:allow"))
			if j < 0 {
				continue
			}
			reason := strings.TrimSpace(string(text[j+len("egressguard:allow"):]))
			reason = strings.TrimSpace(strings.TrimSuffix(strings.TrimSuffix(reason, "-->"), "*/"))
			if reason == "" {
				st.notices = append(st.notices, Notice{File: st.path, Line: ln, Reason: "egressguard:allow without a reason is ignored"})
				continue
			}
			fs[i].Allowed = reason
			break
		}
	}
	return fs
}

func compareFindings(a, b Finding) int {
	return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Commit, b.Commit), cmp.Compare(a.Line, b.Line),
		cmp.Compare(a.Column, b.Column), cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Fingerprint, b.Fingerprint))
}

// lineIndex splits content into lines (without copying).
func lineIndex(b []byte) [][]byte {
	return bytes.Split(b, []byte{'\n'})
}
