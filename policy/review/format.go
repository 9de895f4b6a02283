package review

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/format"
)

// FormatResult is one Rego file run through OPA's formatter.
type FormatResult struct {
	File      string
	Changed   bool
	Formatted []byte
}

// RegoFiles expands directories (their *.rego, not recursive) and files.
func RegoFiles(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("review: fmt: %w", err)
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		m, err := filepath.Glob(filepath.Join(p, "*.rego"))
		if err != nil {
			return nil, fmt.Errorf("review: fmt: %w", err)
		}
		out = append(out, m...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Format runs OPA's formatter (Rego v1) over each file. A file that does
// not parse is an error naming file and line; the other files are still
// formatted.
func Format(files []string) ([]FormatResult, error) {
	var out []FormatResult
	var errs []string
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		got, err := format.Source(f, src)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		out = append(out, FormatResult{File: f, Changed: !bytes.Equal(src, got), Formatted: got})
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("review: fmt: %s", strings.Join(errs, "\n"))
	}
	return out, nil
}
