package main

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/egressguard/egressguard/policy"
)

// configDecoder decodes a YAML node tree into the serve config field by
// field, so that every problem is reported with the line of the user's
// own document (or the --set that carried it), the key path, and what the
// key wants in the config's terms, never a Go type name. All problems are
// collected, not just the first.
type configDecoder struct {
	file  string // the config file, or "--set KEY=VALUE"
	lines bool   // node lines refer to the user's text (false for --set values)
	errs  []error
}

var (
	durationType        = reflect.TypeFor[time.Duration]()
	yamlUnmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	yamlSyntaxLineRe    = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

func (d *configDecoder) fail(n *yaml.Node, path, format string, args ...any) {
	fe := &policy.FieldError{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if d.lines && n != nil {
		fe.Line = n.Line
	}
	d.errs = append(d.errs, fe)
}

// syntax reports a YAML syntax error with its line.
func (d *configDecoder) syntax(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	fe := &policy.FieldError{File: d.file, Msg: msg}
	if m := yamlSyntaxLineRe.FindStringSubmatch(err.Error()); m != nil {
		fe.Msg = m[2]
		if d.lines {
			fe.Line, _ = strconv.Atoi(m[1])
		}
	}
	d.errs = append(d.errs, fe)
}

// yamlFields maps the yaml keys of struct type t to field indexes.
func yamlFields(t reflect.Type) (map[string]int, []string) {
	idx := map[string]int{}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		idx[name] = i
		names = append(names, name)
	}
	return idx, names
}

// custom reports whether t decodes itself (then yaml does the work).
func custom(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	return p.Implements(yamlUnmarshalerType) || p.Implements(textUnmarshalerType)
}

// decode decodes n into v (addressable) at path.
func (d *configDecoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	t := v.Type()
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		// An empty value keeps the default (yaml.v3 zeroes only pointers,
		// maps, slices and interfaces, as here).
		switch t.Kind() {
		case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
			v.SetZero()
		}
	case t == durationType:
		d.duration(n, v, path)
	case t.Kind() == reflect.Struct && !custom(t):
		d.section(n, v, path)
	default:
		nv := reflect.New(t)
		nv.Elem().Set(v)
		if err := n.Decode(nv.Interface()); err != nil {
			d.fail(n, path, "want %s, not %s", describeType(t), describeNode(n))
			return
		}
		v.Set(nv.Elem())
	}
}

// section decodes a mapping into a struct, key by key.
func (d *configDecoder) section(n *yaml.Node, v reflect.Value, path string) {
	idx, names := yamlFields(v.Type())
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping with the keys %s, not %s", strings.Join(names, ", "), describeNode(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := joinPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.fail(k, key, "set twice (first on line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		fi, ok := idx[k.Value]
		if !ok {
			msg := fmt.Sprintf("unknown key; %s has %s", orTop(path), strings.Join(names, ", "))
			if near := nearest(k.Value, names); near != "" {
				msg = fmt.Sprintf("unknown key; did you mean %s? (%s has %s)", joinPath(path, near), orTop(path), strings.Join(names, ", "))
			}
			d.fail(k, key, "%s", msg)
			continue
		}
		d.decode(val, v.Field(fi), key)
	}
}

// duration accepts Go durations ("1500ms", "2s", "1h30m"); a bare number
// is refused with the unit spelled out, since 2 could mean seconds or
// nanoseconds.
func (d *configDecoder) duration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want a duration such as 1500ms or 2s, not %s", describeNode(n))
		return
	}
	if n.Tag == "!!int" || n.Tag == "!!float" {
		d.fail(n, path, "%s", noUnit(n.Value))
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		d.fail(n, path, "want a duration such as 1500ms or 2s, not %q", n.Value)
		return
	}
	v.SetInt(int64(dur))
}

// noUnit is the advice for a duration written as a bare number.
func noUnit(v string) string {
	return fmt.Sprintf("%s has no unit: use %ss (or ms, m, h)", v, v)
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orTop(path string) string {
	if path == "" {
		return "the config"
	}
	return path
}

// nearest is the known key within two edits of key, if one is.
func nearest(key string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(key, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describeType names what a config key of type t wants.
func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, 0 or more"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "a list of " + strings.TrimPrefix(strings.TrimPrefix(describeType(t.Elem()), "a "), "an ") + "s"
	case reflect.Map:
		return "a mapping of " + strings.TrimPrefix(describeType(t.Elem()), "a ") + "s"
	}
	return "a " + t.Kind().String()
}

// describeNode says what the user wrote.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

// decodeConfigYAML decodes data (the file's text) over c.
func decodeConfigYAML(file string, data []byte, c *serveConfig) error {
	d := &configDecoder{file: file, lines: true}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		d.syntax(err)
		return errors.Join(d.errs...)
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		d.decode(doc.Content[0], reflect.ValueOf(c).Elem(), "")
	}
	return errors.Join(d.errs...)
}

// applySet decodes one KEY=VALUE override into c: KEY is a dotted config
// path (dns.cache_size), VALUE is YAML, so lists and durations work
// (dns.upstreams=[10.0.0.2], dns.upstream_timeout=2s).
func applySet(c *serveConfig, kv string) error {
	d := &configDecoder{file: "--set " + kv}
	key, val, ok := strings.Cut(kv, "=")
	parts := strings.Split(key, ".")
	if !ok || len(parts) < 2 || slices.Contains(parts, "") {
		return &policy.FieldError{File: d.file, Msg: "want section.key=value, e.g. dns.cache_size=50000"}
	}
	v := reflect.ValueOf(c).Elem()
	for i, p := range parts {
		if v.Kind() != reflect.Struct || v.Type() == durationType || custom(v.Type()) {
			return &policy.FieldError{File: d.file, Path: key, Msg: fmt.Sprintf("%s is a single value, not a section", strings.Join(parts[:i], "."))}
		}
		idx, names := yamlFields(v.Type())
		fi, ok := idx[p]
		if !ok {
			path := strings.Join(parts[:i], ".")
			msg := fmt.Sprintf("unknown key; %s has %s", orTop(path), strings.Join(names, ", "))
			if near := nearest(p, names); near != "" {
				msg = fmt.Sprintf("unknown key; did you mean %s? (%s has %s)", joinPath(path, near), orTop(path), strings.Join(names, ", "))
			}
			return &policy.FieldError{File: d.file, Path: strings.Join(parts[:i+1], "."), Msg: msg}
		}
		v = v.Field(fi)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(val), &doc); err != nil {
		d.syntax(err)
		return errors.Join(d.errs...)
	}
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
	if len(doc.Content) > 0 {
		n = doc.Content[0]
	}
	d.decode(n, v, key)
	return errors.Join(d.errs...)
}
