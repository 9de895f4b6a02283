package secretscan

import (
	"bytes"
)

// decodeFlat handles the line-oriented formats: .env files, Java
// properties, INI, TOML, HCL (.tfvars) and any other text. Blocks are INI
// and TOML sections, HCL braces, and paragraphs (runs of non-blank lines)
// of env, properties and text files; all of them sit in the file's block.
func decodeFlat(st *fileState, f format, buf []byte, parent int32) {
	li := lineIter{buf: buf}
	// env and properties files are one block (one environment's settings);
	// INI and TOML sections are blocks of their own; text files are read
	// by paragraphs.
	newSection := func(name []byte) int32 {
		id := st.newNamedScope(parent, name)
		st.scopes[id].root = f != fmtEnv && f != fmtProperties
		return id
	}
	section := newSection(nil)
	para := int32(-1)
	var hcl []int32
	block := func() int32 {
		if f == fmtHCL {
			if len(hcl) > 0 {
				return hcl[len(hcl)-1]
			}
			return section
		}
		if f == fmtINI || f == fmtTOML {
			return section
		}
		if para < 0 {
			para = st.newScope(section)
		}
		return para
	}
	for {
		line, ok := li.next()
		if !ok {
			return
		}
		ind, _ := leadingSpaces(line)
		t := line[ind:]
		if len(t) == 0 {
			para = -1
			continue
		}
		switch t[0] {
		case '#':
			continue
		case ';':
			if f == fmtINI {
				continue
			}
		case '!':
			if f == fmtProperties {
				continue
			}
		case '/':
			if f == fmtHCL && bytes.HasPrefix(t, []byte("//")) {
				continue
			}
		case '[':
			if f == fmtINI || f == fmtTOML {
				if bytes.HasSuffix(bytes.TrimRight(t, " \t"), []byte("]")) {
					section = newSection(bytes.Trim(t, "[] \t"))
					continue
				}
			}
		case '}':
			if f == fmtHCL {
				if len(hcl) > 0 {
					hcl = hcl[:len(hcl)-1]
				}
				continue
			}
		}
		startLine := li.n
		key, val, voff := splitAssignment(f, t)
		col := ind + voff + 1
		if f == fmtHCL && bytes.HasSuffix(bytes.TrimRight(t, " \t"), []byte("{")) {
			hcl = append(hcl, st.newNamedScope(block(), bytes.Fields(t)[0]))
			continue
		}
		// Values that span lines: PEM blocks, TOML/HCL multi-line strings,
		// properties continuations.
		raw := true
		switch {
		case bytes.Contains(val, []byte("-----BEGIN")) && !bytes.Contains(val, []byte("-----END")):
			startOff := li.start + ind + voff
			end := li.off
			for {
				l, ok := li.next()
				if !ok {
					break
				}
				end = li.off
				if bytes.Contains(l, []byte("-----END")) {
					break
				}
			}
			val = bytes.TrimRight(buf[startOff:end], "\r\n")
		case f == fmtTOML && (bytes.HasPrefix(val, []byte(`"""`)) || bytes.HasPrefix(val, []byte(`'''`))):
			q := val[:3]
			if bytes.Count(val, q) >= 2 {
				val = bytes.TrimSuffix(val[3:], q)
				break
			}
			startOff := li.start + ind + voff + 3
			end := li.off
			for {
				l, ok := li.next()
				if !ok {
					break
				}
				end = li.off
				if i := bytes.Index(l, q); i >= 0 {
					end = li.start + i
					break
				}
			}
			val = buf[startOff:end]
			col += 3
		case f == fmtHCL && bytes.HasPrefix(val, []byte("<<")):
			tag := bytes.TrimSpace(bytes.TrimLeft(val[2:], "-~"))
			startOff := li.off
			end := li.off
			for {
				l, ok := li.next()
				if !ok {
					break
				}
				if bytes.Equal(bytes.TrimSpace(l), tag) {
					break
				}
				end = li.off
			}
			val = buf[startOff:end]
			startLine, col = startLine+1, 1
		case f == fmtProperties && continued(val):
			joined := append([]byte(nil), val[:len(val)-1]...)
			for {
				l, ok := li.next()
				if !ok {
					break
				}
				l = bytes.TrimLeft(l, " \t")
				if continued(l) {
					joined = append(joined, l[:len(l)-1]...)
					continue
				}
				joined = append(joined, l...)
				break
			}
			val, raw = joined, false
		default:
			hash := f != fmtProperties
			var qoff int
			val, qoff = unquote(val, hash)
			col += qoff
		}
		st.emit(item{key: key, val: val, line: startLine, col: col, scope: block(), raw: raw})
	}
}

func continued(b []byte) bool {
	n := 0
	for i := len(b) - 1; i >= 0 && b[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

// splitAssignment splits "key = value", "key: value", "export KEY=value",
// "key value" (properties). For lines that are not assignments the whole
// line is the value and key is nil. voff is the value's offset in t.
func splitAssignment(f format, t []byte) (key, val []byte, voff int) {
	s := t
	if bytes.HasPrefix(s, []byte("export ")) {
		s = s[7:]
		voff = 7
	}
	i := 0
	for i < len(s) && s[i] != '=' && s[i] != ':' && s[i] != ' ' && s[i] != '\t' {
		i++
	}
	if i == 0 || i == len(s) {
		return nil, t, 0
	}
	k := s[:i]
	j := i
	for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	if j < len(s) && s[j] == ':' && j+1 < len(s) && s[j+1] == '/' {
		return nil, t, 0 // a URL, not "key: value"
	}
	if j < len(s) && (s[j] == '=' || s[j] == ':' && f != fmtTOML && f != fmtHCL) {
		j++
	} else if f != fmtProperties || j == i {
		// "key value" is an assignment only in properties files.
		return nil, t, 0
	}
	if f == fmtText && !envName(bytes.Trim(k, `"'`)) {
		return nil, t, 0
	}
	for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	k = bytes.Trim(k, `"'`)
	return k, s[j:], voff + j
}
