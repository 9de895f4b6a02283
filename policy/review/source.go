// Package review answers the reviewer's question about a policy change:
// what would it block, allow or redirect? It compiles two versions of a
// policy (directories or git refs), compares their plans over every workload
// class and every interesting destination (Diff), checks the project's
// policy conventions (Lint), formats Rego (Format) and explains one decision
// (Explain).
//
// # Policy directory layout
//
// A policy directory (or the tree of a git ref) is read in one of two
// layouts:
//
//   - structured: catalog/*.yaml (catalog files, merged in name order after
//     the embedded default catalog), policy/*.rego (Rego modules and
//     *_test.rego unit tests, the engine's PolicyDir) and scenarios/*.yaml
//     (scenario files);
//   - flat (no catalog/ subdirectory): *.yaml and *.yml at the top level are
//     catalog files, except those with a top-level "scenarios:" key, which
//     are scenario files; *.rego at the top level is the PolicyDir.
package review

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	yaml "go.yaml.in/yaml/v3"

	"github.com/egressguard/egressguard/policy"
)

// Layout is where a policy version's files are.
type Layout struct {
	// Root is the directory read (a temporary extraction for a git ref).
	Root string
	// CatalogFiles are the catalog files, in merge order.
	CatalogFiles []string
	// PolicyDir holds *.rego ("" when there are none).
	PolicyDir string
	// RegoFiles are the *.rego files in PolicyDir (tests included).
	RegoFiles []string
	// ScenarioFiles are scenario files.
	ScenarioFiles []string
}

// ReadLayout finds the catalog, Rego and scenario files under dir (see the
// package documentation for the two layouts).
func ReadLayout(dir string) (Layout, error) {
	l := Layout{Root: dir}
	st, err := os.Stat(dir)
	if err != nil {
		return l, fmt.Errorf("review: %w", err)
	}
	if !st.IsDir() {
		return l, fmt.Errorf("review: %s is not a directory", dir)
	}
	yamls := func(d string) ([]string, error) {
		var out []string
		for _, pat := range []string{"*.yaml", "*.yml"} {
			m, err := filepath.Glob(filepath.Join(d, pat))
			if err != nil {
				return nil, err
			}
			out = append(out, m...)
		}
		slices.Sort(out)
		return out, nil
	}
	if fi, err := os.Stat(filepath.Join(dir, "catalog")); err == nil && fi.IsDir() {
		if l.CatalogFiles, err = yamls(filepath.Join(dir, "catalog")); err != nil {
			return l, fmt.Errorf("review: %w", err)
		}
		if l.ScenarioFiles, err = yamls(filepath.Join(dir, "scenarios")); err != nil {
			return l, fmt.Errorf("review: %w", err)
		}
		l.PolicyDir = filepath.Join(dir, "policy")
	} else {
		all, err := yamls(dir)
		if err != nil {
			return l, fmt.Errorf("review: %w", err)
		}
		for _, f := range all {
			isScen, err := isScenarioFile(f)
			if err != nil {
				return l, err
			}
			if isScen {
				l.ScenarioFiles = append(l.ScenarioFiles, f)
			} else {
				l.CatalogFiles = append(l.CatalogFiles, f)
			}
		}
		l.PolicyDir = dir
	}
	rego, _ := filepath.Glob(filepath.Join(l.PolicyDir, "*.rego"))
	slices.Sort(rego)
	l.RegoFiles = rego
	if len(rego) == 0 {
		l.PolicyDir = ""
	}
	return l, nil
}

// isScenarioFile reports whether a YAML file has a top-level "scenarios" key.
func isScenarioFile(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("review: %w", err)
	}
	var top map[string]yaml.Node
	if err := yaml.Unmarshal(b, &top); err != nil {
		return false, nil // a broken catalog is reported, with its line, by the catalog parser
	}
	_, ok := top["scenarios"]
	return ok, nil
}

// Side is one compiled version of the policy.
type Side struct {
	// Spec is what the user named (a directory or a git ref).
	Spec   string
	Layout Layout
	Engine *policy.Engine
	// Scenarios are the parsed scenario files of the layout.
	Scenarios []policy.Scenario
	cleanup   func()
}

// Close removes a git ref's temporary extraction.
func (s *Side) Close() {
	if s != nil && s.cleanup != nil {
		s.cleanup()
		s.cleanup = nil
	}
}

// LoadOptions configure how a side is compiled.
type LoadOptions struct {
	// RepoDir is the git repository refs are read from ("" = current directory).
	RepoDir string
	// ReplaceDefaultPolicy and NoDefaultCatalog are passed to the engine.
	ReplaceDefaultPolicy bool
	NoDefaultCatalog     bool
	// Now is the clock exceptions expire against (default time.Now).
	Now func() time.Time
	Log *zap.Logger
}

// ErrInput marks errors in what the user named (no such directory or ref),
// as opposed to a policy that does not compile.
var ErrInput = errors.New("bad input")

// Load reads spec (a directory, or else a git ref, optionally REF:PATH)
// and compiles it.
func Load(ctx context.Context, spec string, o LoadOptions) (*Side, error) {
	s := &Side{Spec: spec}
	dir := spec
	if st, err := os.Stat(spec); err != nil || !st.IsDir() {
		tmp, err := extractRef(ctx, o.RepoDir, spec)
		if err != nil {
			return nil, err
		}
		s.cleanup = func() { _ = os.RemoveAll(tmp) }
		dir = tmp
	}
	l, err := ReadLayout(dir)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("%w: %w", ErrInput, err)
	}
	s.Layout = l
	log := o.Log
	if log == nil {
		log = zap.NewNop()
	}
	s.Engine, err = policy.NewEngine(ctx, policy.Options{
		CatalogFiles:         l.CatalogFiles,
		PolicyDir:            l.PolicyDir,
		ReplaceDefaultPolicy: o.ReplaceDefaultPolicy,
		NoDefaultCatalog:     o.NoDefaultCatalog,
		Now:                  o.Now,
	}, log.Named("policy"), prometheus.NewRegistry())
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("review: %s: %w", spec, err)
	}
	var errs []error
	for _, f := range l.ScenarioFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sc, err := policy.ParseScenarios(f, b)
		errs = append(errs, err)
		s.Scenarios = append(s.Scenarios, sc...)
	}
	if err := errors.Join(errs...); err != nil {
		s.Close()
		return nil, fmt.Errorf("review: %s: scenarios: %w", spec, err)
	}
	return s, nil
}

// extractRef writes the tree of a git ref (REF or REF:PATH) into a new
// temporary directory with `git archive`.
func extractRef(ctx context.Context, repo, ref string) (string, error) {
	if strings.HasPrefix(ref, "-") {
		return "", fmt.Errorf("%w: review: %q is neither a directory nor a git ref", ErrInput, ref)
	}
	cmd := exec.CommandContext(ctx, "git", "archive", "--format=tar", ref)
	cmd.Dir = repo
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: review: %q is neither a directory nor a git ref (git archive: %s)", ErrInput, ref, strings.TrimSpace(stderr.String()))
	}
	tmp, err := os.MkdirTemp("", "egressguard-review-*")
	if err != nil {
		return "", fmt.Errorf("review: %w", err)
	}
	if err := untar(&out, tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("review: extracting %s: %w", ref, err)
	}
	return tmp, nil
}

func untar(r io.Reader, dst string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if name == "." || filepath.IsAbs(name) || strings.HasPrefix(name, ".."+string(filepath.Separator)) || name == ".." {
			continue
		}
		p := filepath.Join(dst, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			_, cerr := io.Copy(f, tr)
			if err := errors.Join(cerr, f.Close()); err != nil {
				return err
			}
		}
	}
}

// FromEngine compiles a side from explicit engine options (the --catalog
// and --policy flags) instead of a directory.
func FromEngine(ctx context.Context, opts policy.Options, log *zap.Logger) (*Side, error) {
	if log == nil {
		log = zap.NewNop()
	}
	e, err := policy.NewEngine(ctx, opts, log.Named("policy"), prometheus.NewRegistry())
	if err != nil {
		return nil, err
	}
	l := Layout{CatalogFiles: opts.CatalogFiles, PolicyDir: opts.PolicyDir}
	return &Side{Spec: "flags", Layout: l, Engine: e}, nil
}
