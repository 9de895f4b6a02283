package secretscan

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"regexp"
)

var (
	reURL       = regexp.MustCompile(`\b[a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^\s'"<>\x60,;]+`)
	reJDBC      = regexp.MustCompile(`jdbc:[a-z0-9]+:[^\s'"<>\x60]+`)
	reGoDSN     = regexp.MustCompile(`([^\s'"/:@]*)(?::([^\s'"@]*))?@tcp\(([^)\s]+)\)`)
	reLibpq     = regexp.MustCompile(`\bhost=([^\s'"]+)`)
	reLibpqPass = regexp.MustCompile(`\bpassword=([^\s'"]+)`)
)

// fileState is the per-file detection state. Decoders feed it items.
type fileState struct {
	d        *Detector
	path     string
	scopes   []scopeInfo
	deferred []candidate
	findings []Finding
	notices  []Notice
	keyBuf   []byte
	// override maps items of decoded content (base64 in a Secret) back to
	// the line and column of the original text.
	override *overridePos
	depth    int
	// emitHook, when set, may take an item instead of emit (JSON Secret
	// data held back until the object's kind is known).
	emitHook func(item) bool
}

type overridePos struct {
	line, col int
	via       string
}

func (st *fileState) notice(line int, skipped bool, format string, args ...any) {
	if st.override != nil {
		line = st.override.line
	}
	st.notices = append(st.notices, Notice{File: st.path, Line: line, Reason: fmt.Sprintf(format, args...), Skipped: skipped})
}

// item is one setting a decoder found: the value (unquoted), its key (the
// last path segment; for {name, value} items the name), where it starts,
// and its block. raw is set when val is verbatim file text, so positions
// inside it map back to lines and columns.
type item struct {
	key   []byte
	val   []byte
	line  int
	col   int
	scope int32
	raw   bool
}

// pos maps an offset in the item's value to a line and column.
func (st *fileState) pos(it *item, off int) (line, col int) {
	if st.override != nil {
		return st.override.line, st.override.col
	}
	if !it.raw || off <= 0 || off > len(it.val) {
		return it.line, it.col
	}
	nl := bytes.Count(it.val[:off], []byte{'\n'})
	if nl == 0 {
		return it.line, it.col + off
	}
	last := bytes.LastIndexByte(it.val[:off], '\n')
	return it.line + nl, off - last
}

func (st *fileState) newFinding(r *Rule, it *item, start, end int, msg string) Finding {
	line, col := st.pos(it, start)
	v := it.val[start:end]
	f := Finding{
		File: st.path, Line: line, Column: col, Rule: r.ID, Severity: r.Severity, Kind: r.Kind,
		Environment: EnvProduction, Message: msg, Key: string(it.key), Redacted: redact(v, r.prefix),
		Fingerprint: findingFingerprint(r.ID, st.path, v),
	}
	if st.override != nil {
		f.Decoded = st.override.via
	}
	return f
}

func (st *fileState) report(f Finding) { st.findings = append(st.findings, f) }

// emit is the decoders' entry point: one setting.
func (st *fileState) emit(it item) {
	if st.emitHook != nil && st.emitHook(it) {
		return
	}
	v := bytes.TrimSpace(it.val)
	if len(v) == 0 {
		return
	}
	if len(v) != len(it.val) {
		off := bytes.Index(it.val, v)
		if it.raw && off > 0 {
			it.line, it.col = st.pos(&it, off)
		}
		it.val = v
	}
	d := st.d
	kc := d.keys.classify(&st.keyBuf, it.key)
	if kc.provider == "" {
		kc.provider = st.scopes[it.scope].provider
	}

	if len(d.c.fps) > 0 && len(v) >= 6 {
		if src, ok := d.c.fingerprint(v); ok {
			st.report(st.newFinding(d.rule[RuleFingerprint], &it, 0, len(v), "equals a production secret from "+src))
			return
		}
	}
	if inner, via := nestedContent(v); inner != nil {
		line, col := st.pos(&it, 0) // the outermost key's position when nested
		st.decodedContent(it.key, inner, line, col, it.scope, via)
		return
	}
	st.modeMarker(&it, kc)
	st.gcpItem(&it)

	m := d.anch.mask(v)
	handled := false
	if m != 0 {
		handled = st.anchored(&it, m, kc)
	}
	if !d.urlRule.hit(m) && (kc.host || looksLikeHostValue(v)) {
		st.hostValue(&it, kc)
	}
	if handled || isReferenceValue(v) {
		return
	}
	st.keyed(&it, kc)
}

// anchored runs the rules whose anchors occur in the value; a test-mode
// anchor (sk_test_) is sandbox evidence for its provider. It reports
// whether the value was recognised by a rule (then no generic rule
// applies).
func (st *fileState) anchored(it *item, m uint64, kc keyClass) bool {
	handled := false
	for i, r := range st.d.rules {
		ra := &st.d.ruleAnch[i]
		if ra.test&m != 0 && (r.testRe == nil || r.testRe.Match(it.val)) {
			handled = true
			st.addMarker(it.scope, marker{prod: false, provider: r.Provider, line: it.line, what: r.Provider + " test-mode value"})
		}
		if !ra.hit(m) {
			continue
		}
		detect := r.detect
		if detect == nil {
			detect = (*fileState).match
		}
		handled = detect(st, it, kc, r) || handled
	}
	return handled
}

// match runs a rule's pattern: in-value and identity rules report at once
// (identifiers are also live-mode evidence for their provider), always-live
// and context rules wait for the evidence of the rest of the file.
func (st *fileState) match(it *item, _ keyClass, r *Rule) bool {
	v := it.val
	handled := false
	for _, loc := range r.re.FindAllIndex(v, -1) {
		if longer(v, loc) {
			continue
		}
		handled = true
		if isPlaceholder(v[loc[0]:loc[1]]) {
			continue
		}
		f := st.newFinding(r, it, loc[0], loc[1], r.message)
		switch {
		case r.Env == envAlwaysLive || r.Env == envContext:
			st.defer_(r, r.Provider, it.scope, f)
		case r.Kind == KindIdentifier:
			st.report(f)
			st.addMarker(it.scope, marker{prod: true, provider: r.Provider, line: it.line, what: r.Title})
		default:
			st.report(f)
		}
	}
	return handled
}

// longer reports whether a match is followed by more token characters: it
// is then part of a longer token, not the format matched.
func longer(v []byte, loc []int) bool {
	return loc[1] < len(v) && isIdentByte(v[loc[1]])
}

// keyed runs the rules that are selected by the setting's name.
func (st *fileState) keyed(it *item, kc keyClass) {
	v, k := it.val, st.keyBuf // k: the lower-case key from classifyKey
	secretLike := kc.secret && credentialLike(v)
	for _, r := range st.d.keyRules {
		s := r.byKey
		if r.Provider != "" && kc.provider != r.Provider && !hasAny(k, s.names...) || s.secretKey && !secretLike {
			continue
		}
		start, end := 0, len(v)
		switch {
		case s.value == nil:
		case s.find:
			loc := s.value.FindIndex(v)
			if loc == nil || isPlaceholder(v[loc[0]:loc[1]]) {
				continue
			}
			start, end = loc[0], loc[1]
		case !s.value.Match(v):
			continue
		}
		st.defer_(r, r.Provider, it.scope, st.newFinding(r, it, start, end, r.message))
		c := &st.deferred[len(st.deferred)-1]
		switch {
		case r.ID == RuleGeneric:
			c.prefix = connPrefix(k)
		case s.paired:
			c.prefix, c.paired = pairPrefix(k), true
		}
		return
	}
}

// credentialLike: long enough, no spaces, not a path, URL, number, boolean
// or host name, and not a placeholder.
func credentialLike(v []byte) bool {
	if len(v) < 8 || len(v) > 4096 || bytes.ContainsAny(v, " \t\n") {
		return false
	}
	if bytes.Contains(v, []byte("://")) || isPathLike(v) {
		return false
	}
	classes := 0
	var lo, up, dig, oth bool
	for _, c := range v {
		switch {
		case 'a' <= c && c <= 'z':
			lo = true
		case 'A' <= c && c <= 'Z':
			up = true
		case '0' <= c && c <= '9':
			dig = true
		default:
			oth = true
		}
	}
	for _, b := range []bool{lo, up, dig, oth} {
		if b {
			classes++
		}
	}
	if classes < 2 || !dig && !oth {
		return false
	}
	if looksLikeHostValue(v) && bytes.Count(v, []byte{'.'}) >= 1 && !dig {
		return false
	}
	return !isPlaceholder(v)
}

// isPathLike: /run/secrets/x, ./key.pem, ~/.aws/credentials, not
// "/mQRSua72zX1lUJ..." (a base64 secret may start with a slash).
func isPathLike(v []byte) bool {
	if !(v[0] == '/' || bytes.HasPrefix(v, []byte("./")) || bytes.HasPrefix(v, []byte("../")) || bytes.HasPrefix(v, []byte("~/"))) {
		return false
	}
	if bytes.ContainsAny(v, "+=") {
		return false
	}
	// Path segments are words; a random string's "segments" are not.
	for _, seg := range bytes.Split(bytes.Trim(v, "/.~"), []byte{'/'}) {
		digits, upper := 0, 0
		for _, c := range seg {
			switch {
			case '0' <= c && c <= '9':
				digits++
			case 'A' <= c && c <= 'Z':
				upper++
			}
		}
		if len(seg) > 12 && digits > 0 && upper > 0 {
			return false
		}
	}
	return true
}

// decodeBase64 decodes Kubernetes Secret data (standard base64, padding
// optional, line breaks tolerated).
func decodeBase64(v []byte) ([]byte, error) {
	v = bytes.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, v)
	out := make([]byte, base64.StdEncoding.DecodedLen(len(v)))
	n, err := base64.StdEncoding.Decode(out, v)
	if err != nil {
		raw := bytes.TrimRight(v, "=")
		out = make([]byte, base64.RawStdEncoding.DecodedLen(len(raw)))
		n, err = base64.RawStdEncoding.Decode(out, raw)
	}
	return out[:n], err
}
