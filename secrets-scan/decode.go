package secretscan

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"path"
	"strings"
	"unicode/utf8"
)

// format is a decoder.
type format uint8

const (
	fmtText format = iota
	fmtYAML
	fmtJSON
	fmtTOML
	fmtINI
	fmtEnv
	fmtProperties
	fmtHCL
)

// formatFor picks a decoder from the file name, then from the content.
func formatFor(name string, content []byte) format {
	base := strings.ToLower(path.Base(strings.ReplaceAll(name, "\\", "/")))
	ext := path.Ext(base)
	switch ext {
	case ".yaml", ".yml":
		return fmtYAML
	case ".json", ".tfstate", ".jsonc":
		return fmtJSON
	case ".toml":
		return fmtTOML
	case ".ini", ".cfg", ".conf", ".cnf":
		return fmtINI
	case ".properties":
		return fmtProperties
	case ".tfvars", ".tf", ".hcl":
		return fmtHCL
	case ".env":
		return fmtEnv
	}
	if base == ".env" || strings.HasPrefix(base, ".env.") || strings.HasSuffix(base, ".env") || base == "env" {
		return fmtEnv
	}
	if base == ".npmrc" || base == ".pypirc" || base == "credentials" || base == "config" && bytes.Contains(content, []byte("[default]")) {
		return fmtINI
	}
	t := bytes.TrimLeft(content, " \t\r\n\xef\xbb\xbf")
	if len(t) > 0 && (t[0] == '{' || t[0] == '[' && len(t) > 1 && (t[1] == '{' || t[1] == '\n' || t[1] == '"')) {
		return fmtJSON
	}
	if bytes.HasPrefix(t, []byte("apiVersion:")) || bytes.HasPrefix(t, []byte("---\n")) || bytes.HasPrefix(t, []byte("--- ")) || bytes.HasPrefix(t, []byte("kind:")) {
		return fmtYAML
	}
	return fmtText
}

// decode runs the decoder for f over buf; every block it opens is a child of
// parent.
func decode(st *fileState, f format, buf []byte, parent int32) {
	switch f {
	case fmtYAML:
		decodeYAML(st, buf, parent)
	case fmtJSON:
		decodeJSON(st, buf, parent)
	default:
		decodeFlat(st, f, buf, parent)
	}
}

// decodedContent scans a value that was itself decoded (base64 in a
// Kubernetes Secret): single-line values are one setting, multi-line ones
// are decoded by the format their key's name suggests. Positions map back
// to the key in the original text.
func (st *fileState) decodedContent(key, content []byte, line, col int, scope int32, via string) {
	if st.depth >= maxDecodeDepth || len(content) > maxDecodedSize {
		return
	}
	if st.override != nil {
		via = st.override.via + ", then " + via
	}
	prev := st.override
	st.override = &overridePos{line: line, col: col, via: via}
	st.depth++
	defer func() { st.override = prev; st.depth-- }()
	if isBinary(content) {
		return
	}
	t := bytes.TrimSpace(content)
	if !bytes.ContainsRune(t, '\n') && (len(t) == 0 || t[0] != '{' || !json.Valid(t)) {
		st.emit(item{key: key, val: t, line: line, col: col, scope: scope})
		return
	}
	f := formatFor(string(key), t)
	if f == fmtText && bytes.Contains(t, []byte(": ")) && !bytes.Contains(t, []byte("-----BEGIN")) {
		f = fmtYAML
	}
	decode(st, f, t, st.newScope(scope))
}

// Limits of recursive decoding: a value decoded from a value decoded from
// ... is followed this deep, and only when it is this small.
const (
	maxDecodeDepth = 4
	maxDecodedSize = 1 << 20
)

// nestedContent recognises a value that holds encoded configuration: a
// JSON object in a string (a service-account JSON in an env var, a config
// blob in a ConfigMap) or base64 of text that looks like configuration
// (JSON, KEY=value, key: value). It returns the content to decode and how
// it was encoded, or nil.
func nestedContent(v []byte) ([]byte, string) {
	if len(v) < 16 || len(v) > maxDecodedSize {
		return nil, ""
	}
	if v[0] == '{' && v[len(v)-1] == '}' {
		if json.Valid(v) {
			return v, "JSON in a string"
		}
		return nil, ""
	}
	if len(v) < 24 || len(v)%4 != 0 {
		return nil, ""
	}
	body := bytes.TrimRight(v, "=")
	if len(v)-len(body) > 2 {
		return nil, ""
	}
	for _, c := range body {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return nil, ""
		}
	}
	dec := make([]byte, base64.StdEncoding.DecodedLen(len(v)))
	n, err := base64.StdEncoding.Decode(dec, v)
	if err != nil {
		return nil, ""
	}
	dec = dec[:n]
	if !utf8.Valid(dec) || !bytes.ContainsAny(dec, "{=:") {
		return nil, ""
	}
	for _, c := range dec {
		if c < 0x20 && c != '\n' && c != '\r' && c != '\t' || c == 0x7f {
			return nil, ""
		}
	}
	return dec, "base64"
}

// isBinary: a NUL byte in the first 8 KiB.
func isBinary(b []byte) bool {
	if len(b) > 8192 {
		b = b[:8192]
	}
	return bytes.IndexByte(b, 0) >= 0
}

// lineIter walks lines, tracking number and offset.
type lineIter struct {
	buf   []byte
	off   int // start of the next line
	n     int // number of the line just returned
	start int // offset of the line just returned
}

func (l *lineIter) next() ([]byte, bool) {
	if l.off >= len(l.buf) {
		return nil, false
	}
	l.start = l.off
	l.n++
	end := bytes.IndexByte(l.buf[l.off:], '\n')
	var line []byte
	if end < 0 {
		line = l.buf[l.off:]
		l.off = len(l.buf)
	} else {
		line = l.buf[l.off : l.off+end]
		l.off += end + 1
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, true
}

// unquote strips matching quotes; for unquoted values it drops a trailing
// " #" comment. off is how many bytes were dropped at the front.
func unquote(v []byte, hashComments bool) (out []byte, off int) {
	if len(v) == 0 {
		return v, 0
	}
	if q := v[0]; q == '"' || q == '\'' {
		for i := 1; i < len(v); i++ {
			if v[i] == '\\' && q == '"' {
				i++
				continue
			}
			if v[i] == q {
				return v[1:i], 1
			}
		}
		return v[1:], 1 // unterminated: keep what there is
	}
	if hashComments {
		if i := bytes.Index(v, []byte(" #")); i >= 0 {
			v = v[:i]
		}
		if i := bytes.Index(v, []byte("\t#")); i >= 0 {
			v = v[:i]
		}
	}
	return bytes.TrimRight(v, " \t"), 0
}

func leadingSpaces(line []byte) (n int, tab bool) {
	for n < len(line) && (line[n] == ' ' || line[n] == '\t') {
		if line[n] == '\t' {
			tab = true
		}
		n++
	}
	return n, tab
}

// envName reports whether b is an environment-variable-like name.
func envName(b []byte) bool {
	if len(b) == 0 || len(b) > 128 || '0' <= b[0] && b[0] <= '9' {
		return false
	}
	for _, c := range b {
		if !isIdentByte(c) && c != '.' && c != '-' {
			return false
		}
	}
	return true
}
