package repocheck

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const root = "../.."

// goldenPkgs reads GOLDEN_PKGS from the Makefile.
func goldenPkgs(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "Makefile"))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "GOLDEN_PKGS := "); ok {
			return strings.Fields(v)
		}
	}
	require.NoError(t, sc.Err())
	t.Fatal("Makefile: no GOLDEN_PKGS line")
	return nil
}

// goldenFile is a file name or test-data path that holds expected output.
var goldenFile = regexp.MustCompile(`(^|/)testdata/(golden|out)/|\.golden\.|(^|/)testdata/.*/report\.(txt|md|json)$`)

var updateFlag = regexp.MustCompile(`flag\.Bool\("update"`)

// packagesWithGoldens finds, from the tree itself, the packages that keep
// golden files or declare an -update flag in their tests.
func packagesWithGoldens(t *testing.T) (goldens, flags map[string]bool) {
	t.Helper()
	goldens, flags = map[string]bool{}, map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "bin" {
				return filepath.SkipDir
			}
			return nil
		}
		if goldenFile.MatchString(rel) {
			pkg, _, _ := strings.Cut(rel, "/testdata/")
			if !strings.Contains(rel, "/testdata/") {
				pkg = filepath.ToSlash(filepath.Dir(rel))
			}
			goldens["./"+pkg] = true
		}
		if strings.HasSuffix(rel, "_test.go") {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if updateFlag.Match(b) {
				flags["./"+filepath.ToSlash(filepath.Dir(rel))] = true
			}
		}
		return nil
	})
	require.NoError(t, err)
	delete(flags, "./internal/repocheck") // the regexp above
	return goldens, flags
}

// TestUpdateGoldenCoversEveryGolden is the CI check of `make
// update-golden`: its package list is exactly the packages that keep golden
// files or declare -update, and each of them declares it (go test fails the
// whole command when one listed package does not, which is how the target
// used to break). It reads the tree rather than building eight test
// binaries, so it costs milliseconds.
func TestUpdateGoldenCoversEveryGolden(t *testing.T) {
	pkgs := goldenPkgs(t)
	goldens, flags := packagesWithGoldens(t)
	for pkg := range goldens {
		assert.Contains(t, pkgs, pkg, "%s keeps golden files: add it to GOLDEN_PKGS in the Makefile", pkg)
		assert.True(t, flags[pkg], "%s keeps golden files but its tests declare no -update flag", pkg)
	}
	for pkg := range flags {
		assert.Contains(t, pkgs, pkg, "%s declares -update: add it to GOLDEN_PKGS in the Makefile", pkg)
	}
	for _, pkg := range pkgs {
		assert.True(t, flags[pkg], "GOLDEN_PKGS lists %s, whose tests declare no -update flag (go test would fail)", pkg)
	}
}
