package secretscan

import (
	"bufio"
	"bytes"
	"regexp"
	"strings"
)

// ignorePattern is one line of a .gitignore-style file.
type ignorePattern struct {
	re      *regexp.Regexp
	neg     bool
	dirOnly bool
}

// ignoreList is the patterns of one ignore file, relative to its directory
// (base, slash-separated, "" for the scan root).
type ignoreList struct {
	base     string
	patterns []ignorePattern
}

// parseIgnore reads .gitignore syntax. In egressguard's own ignore file a
// line that is a finding fingerprint (32 hex digits) ignores that finding
// instead of a path.
func parseIgnore(base string, data []byte) (ignoreList, []string) {
	l := ignoreList{base: base}
	var fps []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \t\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if isFingerprint(line) {
			fps = append(fps, line)
			continue
		}
		p := ignorePattern{}
		if strings.HasPrefix(line, "!") {
			p.neg, line = true, line[1:]
		}
		line = strings.TrimPrefix(line, "\\")
		if strings.HasSuffix(line, "/") {
			p.dirOnly, line = true, strings.TrimRight(line, "/")
		}
		if line == "" {
			continue
		}
		anchored := strings.Contains(line, "/")
		line = strings.TrimPrefix(line, "/")
		re, err := regexp.Compile(globRegexp(line, anchored))
		if err != nil {
			continue
		}
		p.re = re
		l.patterns = append(l.patterns, p)
	}
	return l, fps
}

func isFingerprint(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// globRegexp translates a gitignore glob to a regular expression over a
// slash-separated path relative to the ignore file's directory.
func globRegexp(g string, anchored bool) string {
	var b strings.Builder
	b.WriteString("^")
	if !anchored {
		b.WriteString("(?:.*/)?")
	}
	for i := 0; i < len(g); i++ {
		c := g[i]
		switch {
		case c == '*' && i+1 < len(g) && g[i+1] == '*':
			switch {
			case i+2 < len(g) && g[i+2] == '/':
				b.WriteString("(?:.*/)?")
				i += 2
			default:
				b.WriteString(".*")
				i++
			}
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		case c == '[':
			j := strings.IndexByte(g[i:], ']')
			if j < 0 {
				b.WriteString(`\[`)
				continue
			}
			cls := g[i+1 : i+j]
			if strings.HasPrefix(cls, "!") {
				cls = "^" + cls[1:]
			}
			b.WriteString("[" + strings.ReplaceAll(cls, `\`, `\\`) + "]")
			i += j
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return b.String()
}

// ignoreStack is the ignore files in force for a directory, outermost first.
type ignoreStack []ignoreList

// ignored reports whether rel (slash-separated, relative to the scan root)
// is ignored: the last matching pattern wins, deeper files last.
func (s ignoreStack) ignored(rel string, isDir bool) bool {
	ign := false
	for _, l := range s {
		sub := rel
		if l.base != "" {
			if !strings.HasPrefix(rel, l.base+"/") {
				continue
			}
			sub = rel[len(l.base)+1:]
		}
		for _, p := range l.patterns {
			if p.dirOnly && !isDir {
				continue
			}
			if p.re.MatchString(sub) {
				ign = !p.neg
			}
		}
	}
	return ign
}
