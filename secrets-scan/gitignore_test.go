package secretscan

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestGitignoreSemantics(t *testing.T) {
	l, fps := parseIgnore("", []byte("# comment\n*.log\n!keep.log\nbuild/\n/root-only.env\ndocs/**/secret.yaml\n**/tmp\na?c.txt\n[xy].env\n0123456789abcdef0123456789abcdef\n"))
	assert.Equal(t, []string{"0123456789abcdef0123456789abcdef"}, fps)
	sub, _ := parseIgnore("deep", []byte("local.env\n/anchored.env\n"))
	s := ignoreStack{l, sub}
	for _, tc := range []struct {
		path  string
		dir   bool
		wantI bool
	}{
		{"x.log", false, true},
		{"a/b/x.log", false, true},
		{"keep.log", false, false},
		{"build", true, true},
		{"build", false, false}, // a file named build is not a build/ directory
		{"root-only.env", false, true},
		{"sub/root-only.env", false, false},
		{"docs/secret.yaml", false, true},
		{"docs/a/b/secret.yaml", false, true},
		{"x/tmp", true, true},
		{"abc.txt", false, true},
		{"abbc.txt", false, false},
		{"x.env", false, true},
		{"z.env", false, false},
		{"deep/local.env", false, true},
		{"deep/more/local.env", false, true},
		{"local.env", false, false},
		{"deep/anchored.env", false, true},
		{"deep/more/anchored.env", false, false},
	} {
		assert.Equal(t, tc.wantI, s.ignored(tc.path, tc.dir), tc.path)
	}
}
