package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FieldError is one problem in a catalog or scenario file, with its position.
type FieldError struct {
	File string
	Line int    // 0 when unknown
	Path string // e.g. providers[3].endpoints[0].live; "" for the whole file
	Msg  string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// path is a field path inside a YAML document: string keys and int indexes.
type path []any

func (p path) String() string {
	var b strings.Builder
	for _, s := range p {
		switch s := s.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", s)
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			if strings.ContainsAny(s, ".[] ") {
				b.WriteString(strconv.Quote(s))
			} else {
				b.WriteString(s)
			}
		}
	}
	return b.String()
}

func (p path) with(s ...any) path {
	out := make(path, 0, len(p)+len(s))
	return append(append(out, p...), s...)
}

// doc is a decoded YAML file kept for error positions.
type doc struct {
	file string
	data []byte
	root *yaml.Node // the top-level value node; nil for an empty file
}

// line finds the line of the node at p, or of its deepest existing ancestor.
func (d *doc) line(p path) int {
	n := d.root
	if n == nil {
		return 0
	}
	ln := n.Line
	for _, s := range p {
		var next *yaml.Node
		switch s := s.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == s {
						next = n.Content[i+1]
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && s >= 0 && s < len(n.Content) {
				next = n.Content[s]
			}
		}
		if next == nil {
			return ln
		}
		n = next
		ln = n.Line
	}
	return ln
}

func (d *doc) errf(p path, format string, args ...any) error {
	return &FieldError{File: d.file, Line: d.line(p), Path: p.String(), Msg: fmt.Sprintf(format, args...)}
}

// keyPath finds the path of the mapping key named key on line ln.
func (d *doc) keyPath(ln int, key string) (path, bool) {
	var walk func(n *yaml.Node, p path) (path, bool)
	walk = func(n *yaml.Node, p path) (path, bool) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if k.Line == ln && k.Value == key {
					return p.with(key), true
				}
				if r, ok := walk(n.Content[i+1], p.with(k.Value)); ok {
					return r, true
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				if r, ok := walk(c, p.with(i)); ok {
					return r, true
				}
			}
		}
		return nil, false
	}
	if d.root == nil {
		return nil, false
	}
	return walk(d.root, nil)
}

// valuePath finds the path of the deepest scalar on line ln.
func (d *doc) valuePath(ln int) (path, bool) {
	var best path
	found := false
	var walk func(n *yaml.Node, p path)
	walk = func(n *yaml.Node, p path) {
		if n.Line == ln && (!found || len(p) >= len(best)) {
			best, found = p, true
		}
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], p.with(n.Content[i].Value))
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, p.with(i))
			}
		}
	}
	if d.root != nil {
		walk(d.root, nil)
	}
	return best, found
}

var (
	yamlLineRe    = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	yamlUnknownRe = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
)

// decodeStrict parses data into out with unknown fields rejected. Every
// error names the file and, where yaml reports it, the line and field.
func decodeStrict(file string, data []byte, out any) (*doc, error) {
	d := &doc{file: file, data: data}
	var node yaml.Node
	if err := yaml.Unmarshal(data, &node); err != nil {
		return d, d.convert(err)
	}
	if node.Kind == yaml.DocumentNode && len(node.Content) > 0 {
		d.root = node.Content[0]
	}
	if d.root == nil {
		return d, nil // empty file: zero value
	}
	if d.root.Kind != yaml.MappingNode {
		return d, &FieldError{File: file, Line: d.root.Line, Msg: "want a mapping at the top level"}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		return d, d.convert(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return d, &FieldError{File: file, Line: extra.Line, Msg: "more than one YAML document in the file"}
	}
	return d, nil
}

// convert turns yaml's errors into FieldErrors.
func (d *doc) convert(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		errs := make([]error, 0, len(te.Errors))
		for _, msg := range te.Errors {
			errs = append(errs, d.convertLine(msg))
		}
		return errors.Join(errs...)
	}
	return d.convertLine(err.Error())
}

func (d *doc) convertLine(msg string) error {
	m := yamlLineRe.FindStringSubmatch(msg)
	if m == nil {
		return &FieldError{File: d.file, Msg: strings.TrimPrefix(msg, "yaml: ")}
	}
	ln, _ := strconv.Atoi(m[1])
	if parserProblems[m[2]] {
		ln = d.syntaxLine(ln)
	}
	fe := &FieldError{File: d.file, Line: ln, Msg: m[2]}
	if u := yamlUnknownRe.FindStringSubmatch(m[2]); u != nil {
		fe.Msg = fmt.Sprintf("unknown field %q", u[1])
		if p, ok := d.keyPath(ln, u[1]); ok {
			fe.Path = p.String()
		}
		return fe
	}
	if p, ok := d.valuePath(ln); ok {
		fe.Path = p.String()
	}
	return fe
}

// parserProblems are the messages of yaml's parser (as opposed to its
// scanner). For these, yaml/v3 reports a 0-based line (decode.go, fail():
// only scanner errors get the +1), and the line of the enclosing
// construct's start when there is one, not the line of the problem.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// maxSyntaxScan bounds the lines syntaxLine re-parses.
const maxSyntaxScan = 2000

// syntaxLine returns the 1-based line of a parser error yaml reported as
// the 0-based line reported: the first line from there on whose prefix
// of the file (up to and including it) no longer parses. Prefixes cut at
// line ends parse unless the problem is inside them, so this is where the
// parser gave up. Falls back to reported+1.
func (d *doc) syntaxLine(reported int) int {
	lines := bytes.SplitAfter(d.data, []byte("\n"))
	end := 0
	for i := 0; i < reported && i < len(lines); i++ {
		end += len(lines[i])
	}
	for ln := reported + 1; ln <= len(lines) && ln <= reported+maxSyntaxScan; ln++ {
		end += len(lines[ln-1])
		var n yaml.Node
		if err := yaml.Unmarshal(d.data[:end], &n); err != nil {
			return ln
		}
	}
	return reported + 1
}
