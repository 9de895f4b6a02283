package secretscan

import (
	"bytes"
	"encoding/json"
)

// yamlFrame is an open block: a mapping under a key or a list item.
type yamlFrame struct {
	indent int
	scope  int32
	item   bool
	key    string // the key that opened the block
	name   []byte // the item's "name:" value ({name, value} lists)
}

// decodeYAML is a tolerant, line-oriented YAML reader: it follows block
// mappings and sequences by indentation, block scalars, multi-document
// streams and Kubernetes Secrets (base64 data decoded after the document is
// read, since "kind" may come after "data"). It never fails: what it cannot
// follow it reads as plain values, and structural damage is reported as a
// notice with its line.
func decodeYAML(st *fileState, buf []byte, parent int32) {
	y := yamlDoc{st: st, parent: parent}
	y.start()
	li := lineIter{buf: buf}
	var (
		inBlock    bool
		blockInd   int
		blockKey   []byte
		blockScope int32
		blockStart = -1
		blockEnd   int
		blockLine  int
	)
	flushBlock := func() {
		if inBlock && blockStart >= 0 {
			y.value(blockKey, buf[blockStart:blockEnd], blockLine, 1, blockScope, true)
		}
		inBlock, blockStart = false, -1
	}
	for {
		line, ok := li.next()
		if !ok {
			break
		}
		ind, tab := leadingSpaces(line)
		rest := line[ind:]
		if inBlock {
			if len(rest) == 0 || ind > blockInd {
				if len(rest) > 0 {
					if blockStart < 0 {
						blockStart, blockLine = li.start, li.n
					}
					blockEnd = li.start + len(line)
				}
				continue
			}
			flushBlock()
		}
		if len(rest) == 0 || rest[0] == '#' {
			continue
		}
		if ind == 0 && (bytes.Equal(rest, []byte("---")) || bytes.HasPrefix(rest, []byte("--- ")) || bytes.Equal(rest, []byte("..."))) {
			y.end()
			y.start()
			continue
		}
		if ind == 0 && rest[0] == '%' {
			continue
		}
		if tab && !y.tabNoted {
			y.tabNoted = true
			st.notice(li.n, false, "broken YAML: tab in indentation; read line by line from here")
		}
		// Sequence entries: "- ", possibly nested ("- - x").
		isItem := false
		for len(rest) > 0 && rest[0] == '-' && (len(rest) == 1 || rest[1] == ' ') {
			dash := ind
			j := 1
			for j < len(rest) && rest[j] == ' ' {
				j++
			}
			ind += j
			rest = rest[j:]
			isItem = true
			y.popTo(dash, true)
			y.push(yamlFrame{indent: dash, scope: st.newScope(y.top().scope), item: true})
		}
		if !isItem {
			y.popTo(ind, false)
		}
		if len(rest) == 0 || rest[0] == '#' {
			continue
		}
		top := y.top()
		key, val, voff, isKey := splitYAMLKey(rest)
		if !isKey {
			// A plain scalar: a list entry, a continuation line, or damage.
			v, qoff := unquote(rest, true)
			if isItem {
				if k, vv, off := splitAssignment(fmtEnv, v); k != nil && envName(k) { // docker-compose "- KEY=value"
					st.setTransparent(top.scope)
					y.value(k, vv, li.n, ind+qoff+off+1, top.scope, true)
					continue
				}
				y.value(y.lastKey, v, li.n, ind+qoff+1, top.scope, true)
				continue
			}
			y.value(y.lastKey, v, li.n, ind+qoff+1, top.scope, true)
			continue
		}
		if !isItem && y.lastHadValue && ind > y.lastKeyInd && !y.damageNoted {
			y.damageNoted = true
			st.notice(li.n, false, "broken YAML: a key nested under a scalar value; read line by line from here")
		}
		y.lastKey, y.lastKeyInd = key, ind
		if len(val) > 0 && (val[0] == '&' || val[0] == '!') { // anchor or tag
			if sp := bytes.IndexByte(val, ' '); sp >= 0 {
				trimmed := bytes.TrimLeft(val[sp:], " ")
				voff += len(val) - len(trimmed)
				val = trimmed
			} else {
				val = nil // only an anchor or tag: a nested block follows
			}
		}
		v, qoff := unquote(val, true)
		y.lastHadValue = len(v) > 0
		if len(v) == 0 {
			s := st.newNamedScope(top.scope, key)
			y.push(yamlFrame{indent: ind, scope: s, key: string(key)})
			if top.scope == y.doc && ind == 0 && string(key) == "data" {
				y.dataScope = s
			}
			continue
		}
		if v[0] == '|' || v[0] == '>' {
			inBlock, blockInd, blockKey, blockScope = true, ind, key, top.scope
			y.lastHadValue = false
			continue
		}
		if top.scope == y.doc && ind == 0 && string(key) == "kind" {
			y.kind = string(v)
		}
		// A Kubernetes object's name often says whose settings it holds
		// (Secret "paypal-credentials").
		if string(key) == "name" && top.key == "metadata" || top.scope == y.doc && string(key) == "metadata" && len(v) > 0 && v[0] == '{' {
			if p := providerInName(string(v)); p != "" && st.scopes[y.doc].provider == "" {
				st.scopes[y.doc].provider = p
			}
		}
		if top.item {
			switch string(key) {
			case "name":
				y.stack[len(y.stack)-1].name = v
			case "value", "valueFrom":
				if n := y.stack[len(y.stack)-1].name; n != nil {
					st.setTransparent(top.scope)
					key = n
				}
			}
		}
		raw := true
		if val[0] == '"' && bytes.IndexByte(v, '\\') >= 0 {
			// A double-quoted scalar with escapes (often JSON held in an
			// env var's value): its escapes are JSON's.
			var s string
			if json.Unmarshal(val[:len(v)+2], &s) == nil {
				v, raw = []byte(s), false
			}
		}
		y.value(key, v, li.n, ind+voff+qoff+1, top.scope, raw)
	}
	flushBlock()
	y.end()
}

type yamlDoc struct {
	st           *fileState
	parent       int32
	doc          int32
	stack        []yamlFrame
	kind         string
	dataScope    int32
	pending      []item
	lastKey      []byte
	lastKeyInd   int
	lastHadValue bool
	tabNoted     bool
	damageNoted  bool
}

func (y *yamlDoc) start() {
	y.doc = y.st.newRoot(y.parent)
	y.stack = append(y.stack[:0], yamlFrame{indent: -1, scope: y.doc})
	y.kind, y.dataScope, y.pending = "", -1, y.pending[:0]
	y.lastKey, y.lastHadValue, y.damageNoted = nil, false, false
}

func (y *yamlDoc) top() yamlFrame { return y.stack[len(y.stack)-1] }

func (y *yamlDoc) push(f yamlFrame) { y.stack = append(y.stack, f) }

// popTo closes the blocks that a line at this indentation leaves. A list
// entry at the same indentation as its parent key ("env:\n- name: x") stays
// inside it.
func (y *yamlDoc) popTo(ind int, item bool) {
	for len(y.stack) > 1 {
		t := y.stack[len(y.stack)-1]
		if t.indent > ind || t.indent == ind && (!item || t.item) {
			y.stack = y.stack[:len(y.stack)-1]
			continue
		}
		break
	}
}

func (y *yamlDoc) value(key, val []byte, line, col int, scope int32, raw bool) {
	if y.dataScope >= 0 && scope == y.dataScope {
		y.pending = append(y.pending, item{key: key, val: val, line: line, col: col, scope: scope, raw: raw})
		return
	}
	y.st.emit(item{key: key, val: val, line: line, col: col, scope: scope, raw: raw})
}

// end closes a document: a Secret's data is base64-decoded and scanned,
// anything else's data (a ConfigMap's) is scanned as it is.
func (y *yamlDoc) end() {
	secret := y.kind == "Secret"
	for _, it := range y.pending {
		if !secret {
			y.st.emit(it)
			continue
		}
		dec, err := decodeBase64(it.val)
		if err != nil {
			y.st.notice(it.line, false, "Secret data %q is not valid base64; scanned as it is", it.key)
			y.st.emit(it)
			continue
		}
		y.st.decodedContent(it.key, dec, it.line, it.col, it.scope, "base64 (Secret data)")
	}
	y.pending = y.pending[:0]
}

// splitYAMLKey splits "key: value" (the key may be quoted). voff is the
// value's offset in rest.
func splitYAMLKey(rest []byte) (key, val []byte, voff int, ok bool) {
	if len(rest) == 0 {
		return nil, nil, 0, false
	}
	if q := rest[0]; q == '"' || q == '\'' {
		end := bytes.IndexByte(rest[1:], q)
		if end < 0 {
			return nil, nil, 0, false
		}
		k := rest[1 : end+1]
		after := rest[end+2:]
		if len(after) == 0 || after[0] != ':' || len(after) > 1 && after[1] != ' ' && after[1] != '\t' {
			return nil, nil, 0, false
		}
		v := bytes.TrimLeft(after[1:], " \t")
		return k, v, len(rest) - len(v), true
	}
	if rest[0] == '{' || rest[0] == '[' {
		return nil, nil, 0, false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if c == ':' && (i+1 == len(rest) || rest[i+1] == ' ' || rest[i+1] == '\t') {
			if i == 0 {
				return nil, nil, 0, false
			}
			v := bytes.TrimLeft(rest[i+1:], " \t")
			return bytes.TrimRight(rest[:i], " \t"), v, len(rest) - len(v), true
		}
		if c == ' ' && i+1 < len(rest) && rest[i+1] == '#' {
			return nil, nil, 0, false
		}
	}
	return nil, nil, 0, false
}
