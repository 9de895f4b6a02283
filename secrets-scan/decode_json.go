package secretscan

import (
	"encoding/json"
	"errors"
	"fmt"
)

const maxJSONDepth = 256

// decodeJSON walks a JSON document (or a stream of them) with line and
// column tracking. Objects are blocks; {name, value} objects in arrays (ECS
// task definitions) are one setting each. A Kubernetes Secret in JSON form
// has its data base64-decoded. On a syntax error the rest of the file, from
// the damaged line on, is read as text and a notice says so.
func decodeJSON(st *fileState, buf []byte, parent int32) {
	p := jsonDec{st: st, buf: buf, line: 1}
	for {
		p.ws()
		if p.i >= len(p.buf) {
			return
		}
		doc := st.newRoot(parent)
		if err := p.value(nil, doc, 0, true); err != nil {
			st.notice(p.line, false, "invalid JSON: %v; rest of the file read as text", err)
			decodeFlat(st, fmtText, buf[p.lineStart:], parent)
			return
		}
	}
}

type jsonDec struct {
	st        *fileState
	buf       []byte
	i         int
	line      int
	lineStart int
}

var errDepth = errors.New("nested too deeply")

func (p *jsonDec) ws() {
	for p.i < len(p.buf) {
		switch p.buf[p.i] {
		case '\n':
			p.line++
			p.lineStart = p.i + 1
		case ' ', '\t', '\r':
		case '/': // JSONC comments
			if p.i+1 < len(p.buf) && p.buf[p.i+1] == '/' {
				for p.i < len(p.buf) && p.buf[p.i] != '\n' {
					p.i++
				}
				continue
			}
			return
		default:
			return
		}
		p.i++
	}
}

func (p *jsonDec) errf(format string, args ...any) error {
	return fmt.Errorf("line %d column %d: %s", p.line, p.i-p.lineStart+1, fmt.Sprintf(format, args...))
}

// str reads a string; raw is false when escapes were decoded.
func (p *jsonDec) str() (s []byte, line, col int, raw bool, err error) {
	line, col = p.line, p.i-p.lineStart+2
	start := p.i + 1
	esc := false
	for j := start; j < len(p.buf); j++ {
		switch c := p.buf[j]; {
		case c == '\\':
			esc = true
			j++
		case c == '"':
			p.i = j + 1
			if !esc {
				return p.buf[start:j], line, col, true, nil
			}
			var out string
			if err := json.Unmarshal(p.buf[start-1:j+1], &out); err != nil {
				return p.buf[start:j], line, col, true, nil
			}
			return []byte(out), line, col, false, nil
		case c == '\n':
			return nil, 0, 0, false, p.errf("newline in string")
		}
	}
	return nil, 0, 0, false, p.errf("unterminated string")
}

// value reads one value under key in block scope.
func (p *jsonDec) value(key []byte, scope int32, depth int, top bool) error {
	if depth > maxJSONDepth {
		return p.errf("%v", errDepth)
	}
	p.ws()
	if p.i >= len(p.buf) {
		return p.errf("unexpected end of input")
	}
	switch c := p.buf[p.i]; {
	case c == '{':
		if top { // the document's object is the document's block
			return p.object(scope, depth, top)
		}
		return p.object(p.st.newNamedScope(scope, key), depth, top)
	case c == '[':
		p.i++
		for {
			p.ws()
			if p.i < len(p.buf) && p.buf[p.i] == ']' {
				p.i++
				return nil
			}
			if err := p.value(key, scope, depth+1, false); err != nil {
				return err
			}
			p.ws()
			if p.i >= len(p.buf) {
				return p.errf("unterminated array")
			}
			if p.buf[p.i] == ',' {
				p.i++
				continue
			}
			if p.buf[p.i] != ']' {
				return p.errf("expected , or ] in array")
			}
		}
	case c == '"':
		s, line, col, raw, err := p.str()
		if err != nil {
			return err
		}
		p.st.emit(item{key: key, val: s, line: line, col: col, scope: scope, raw: raw})
		return nil
	default:
		start, line, col := p.i, p.line, p.i-p.lineStart+1
		for p.i < len(p.buf) && (p.buf[p.i] >= 'a' && p.buf[p.i] <= 'z' || p.buf[p.i] >= '0' && p.buf[p.i] <= '9' ||
			p.buf[p.i] == '-' || p.buf[p.i] == '+' || p.buf[p.i] == '.' || p.buf[p.i] == 'E') {
			p.i++
		}
		if p.i == start {
			return p.errf("unexpected %q", c)
		}
		p.st.emit(item{key: key, val: p.buf[start:p.i], line: line, col: col, scope: scope, raw: true})
		return nil
	}
}

func (p *jsonDec) object(scope int32, depth int, top bool) error {
	p.i++ // {
	var name []byte
	var kind string
	var data []item
	dataScope := int32(-1)
	for {
		p.ws()
		if p.i >= len(p.buf) {
			return p.errf("unterminated object")
		}
		if p.buf[p.i] == '}' {
			p.i++
			break
		}
		if p.buf[p.i] != '"' {
			return p.errf("expected a key")
		}
		k, _, _, _, err := p.str()
		if err != nil {
			return err
		}
		p.ws()
		if p.i >= len(p.buf) || p.buf[p.i] != ':' {
			return p.errf("expected : after key")
		}
		p.i++
		p.ws()
		switch {
		case top && string(k) == "data" && p.i < len(p.buf) && p.buf[p.i] == '{':
			// Held back until "kind" is known.
			dataScope = p.st.newNamedScope(scope, k)
			saved := p.st.emitHook
			p.st.emitHook = func(it item) bool {
				if it.scope == dataScope {
					data = append(data, it)
					return true
				}
				return false
			}
			err = p.object(dataScope, depth+1, false)
			p.st.emitHook = saved
		case p.i < len(p.buf) && p.buf[p.i] == '"' && (string(k) == "name" || string(k) == "value" || string(k) == "kind"):
			s, line, col, raw, e := p.str()
			err = e
			if e == nil {
				switch string(k) {
				case "name":
					name = s
				case "kind":
					if top {
						kind = string(s)
					}
				case "value":
					if name != nil {
						p.st.setTransparent(scope)
						k = name
					}
				}
				p.st.emit(item{key: k, val: s, line: line, col: col, scope: scope, raw: raw})
			}
		default:
			err = p.value(k, scope, depth+1, false)
		}
		if err != nil {
			return err
		}
		p.ws()
		if p.i < len(p.buf) && p.buf[p.i] == ',' {
			p.i++
			continue
		}
		if p.i < len(p.buf) && p.buf[p.i] == '}' {
			p.i++
			break
		}
		return p.errf("expected , or } in object")
	}
	for _, it := range data {
		if kind != "Secret" {
			p.st.emit(it)
			continue
		}
		dec, err := decodeBase64(it.val)
		if err != nil {
			p.st.notice(it.line, false, "Secret data %q is not valid base64; scanned as it is", it.key)
			p.st.emit(it)
			continue
		}
		p.st.decodedContent(it.key, dec, it.line, it.col, it.scope, "base64 (Secret data)")
	}
	return nil
}
