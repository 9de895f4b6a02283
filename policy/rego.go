package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// regoErrors turns OPA's errors into one error per problem, each starting
// with file:line so that an operator can jump to it.
func regoErrors(err error) error {
	var ae ast.Errors
	if !errors.As(err, &ae) {
		return err
	}
	errs := make([]error, 0, len(ae))
	for _, e := range ae {
		loc := "rego"
		if e.Location != nil {
			loc = fmt.Sprintf("%s:%d", e.Location.File, e.Location.Row)
		}
		errs = append(errs, fmt.Errorf("%s: %s: %s", loc, e.Code, e.Message))
	}
	return errors.Join(errs...)
}

// readRegoDir reads the *.rego files of dir, sorted by name: policy modules
// and, separately, *_test.rego unit tests.
func readRegoDir(dir string) (modules, tests []regoFile, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("policy: policy dir: %w", err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".rego") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var errs []error
	for _, n := range names {
		p := filepath.Join(dir, n)
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy: %w", err))
			continue
		}
		if strings.HasSuffix(n, "_test.rego") {
			tests = append(tests, regoFile{Name: p, Data: b})
		} else {
			modules = append(modules, regoFile{Name: p, Data: b})
		}
	}
	return modules, tests, errors.Join(errs...)
}

// parseRego parses Rego v1 modules; all syntax errors are reported at once.
func parseRego(files []regoFile) (map[string]*ast.Module, error) {
	mods := make(map[string]*ast.Module, len(files))
	var errs []error
	for _, f := range files {
		m, err := ast.ParseModuleWithOpts(f.Name, string(f.Data), ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
		if err != nil {
			errs = append(errs, regoErrors(err))
			continue
		}
		mods[f.Name] = m
	}
	return mods, errors.Join(errs...)
}

// compileRego compiles parsed modules together.
func compileRego(mods map[string]*ast.Module) (*ast.Compiler, error) {
	c := ast.NewCompiler().WithEnablePrintStatements(false)
	c.Compile(mods)
	if c.Failed() {
		return nil, regoErrors(c.Errors)
	}
	return c, nil
}
