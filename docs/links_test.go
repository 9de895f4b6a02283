// Package docs holds the project's documentation; its test keeps the
// Markdown of the whole repository linked correctly.
package docs

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	inlineLinkRe = regexp.MustCompile(`!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	refLinkRe    = regexp.MustCompile(`^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$`)
	codeSpanRe   = regexp.MustCompile("`[^`]*`")
	headingRe    = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
	schemeRe     = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
	// Paths of the machines the project is developed on, which readers of
	// the repository do not have.
	outsideRe = regexp.MustCompile(`(?:^|[\s(\x60"'])(/work/|/tmp/|/root/|/home/|\.\./shared/)`)
)

// markdownFiles lists the repository's Markdown, test fixtures excluded.
func markdownFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "bin", "testdata", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return nil
	}))
	return files
}

// doc is one Markdown file: its links (with line numbers), its headings'
// anchors, and lines that name paths outside the repository.
type doc struct {
	links   []link
	anchors map[string]bool
	outside []link
}

type link struct {
	line   int
	target string
}

func parseDoc(t *testing.T, path string) doc {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	d := doc{anchors: map[string]bool{}}
	seen := map[string]int{}
	fenced := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := outsideRe.FindStringSubmatch(line); m != nil {
			d.outside = append(d.outside, link{n, strings.TrimSpace(line)})
		}
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		if m := headingRe.FindStringSubmatch(line); m != nil {
			a := slug(m[1])
			if k := seen[a]; k > 0 {
				d.anchors[fmt.Sprintf("%s-%d", a, k)] = true
			} else {
				d.anchors[a] = true
			}
			seen[a]++
		}
		text := codeSpanRe.ReplaceAllString(line, "")
		for _, m := range inlineLinkRe.FindAllStringSubmatch(text, -1) {
			d.links = append(d.links, link{n, m[1]})
		}
		if m := refLinkRe.FindStringSubmatch(text); m != nil {
			d.links = append(d.links, link{n, m[1]})
		}
	}
	require.NoError(t, sc.Err())
	return d
}

// slug is GitHub's anchor for a heading: markup dropped, lower case,
// punctuation other than '-' and '_' removed, spaces as '-'.
func slug(heading string) string {
	heading = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestMarkdownLinks: every relative link in the repository's Markdown
// names a file (and heading) that exists inside the repository, and no
// document points at paths outside it.
func TestMarkdownLinks(t *testing.T) {
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	files := markdownFiles(t, root)
	require.NotEmpty(t, files)
	docs := map[string]doc{}
	for _, f := range files {
		docs[f] = parseDoc(t, f)
	}
	checked := 0
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		for _, o := range docs[f].outside {
			t.Errorf("%s:%d: points outside the repository: %s", rel, o.line, o.target)
		}
		for _, l := range docs[f].links {
			if schemeRe.MatchString(l.target) {
				continue // a URL
			}
			checked++
			pathPart, anchor, _ := strings.Cut(l.target, "#")
			target := f
			if pathPart != "" {
				if strings.HasPrefix(pathPart, "/") {
					t.Errorf("%s:%d: %s: an absolute path; link relative to the file", rel, l.line, l.target)
					continue
				}
				target = filepath.Join(filepath.Dir(f), filepath.FromSlash(pathPart))
				if r, err := filepath.Rel(root, target); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
					t.Errorf("%s:%d: %s: leaves the repository", rel, l.line, l.target)
					continue
				}
				if _, err := os.Stat(target); err != nil {
					t.Errorf("%s:%d: %s: no such file or directory", rel, l.line, l.target)
					continue
				}
			}
			if anchor == "" || !strings.HasSuffix(target, ".md") {
				continue
			}
			td, ok := docs[target]
			if !ok {
				td = parseDoc(t, target)
			}
			assert.True(t, td.anchors[anchor], "%s:%d: %s: no heading with anchor #%s", rel, l.line, l.target, anchor)
		}
	}
	assert.Greater(t, checked, 5, "relative links were found and checked")
}

// TestSlug pins the anchor rule on headings the README links to.
func TestSlug(t *testing.T) {
	assert.Equal(t, "admin-admin-and-decision-records-decisions", slug("Admin (`admin:`) and decision records (`decisions:`)"))
	assert.Equal(t, "a-two-minute-tour", slug("A two-minute tour"))
	assert.Equal(t, "dns-dns", slug("DNS (`dns:`)"))
	assert.Equal(t, "see-the-docs", slug("See [the docs](x.md)"))
}
