// Command testsummary runs `go test -json` and prints what a person needs
// from it: go test's own package lines (ok, FAIL, no test files), the
// output of failing tests and build errors as they happen, then every
// skipped test with the reason it gave (plain go test hides skips), and a
// closing line. It exits with go test's exit status.
//
//	go run ./internal/testsummary -- go test -race -json ./...
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string // build-output, build-fail
}

// skip is one skipped test and its reason.
type skip struct{ pkg, test, reason string }

// summary accumulates what the stream showed.
type summary struct {
	out      io.Writer
	buf      map[string][]string // per package/test: output so far
	skips    []skip
	failed   []string // packages
	passed   int
	noTests  int
	badLines int
}

func newSummary(out io.Writer) *summary {
	return &summary{out: out, buf: map[string][]string{}}
}

// add handles one line of the stream.
func (s *summary) add(line []byte) {
	var e event
	if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
		// Not test2json: go itself complaining (e.g. a bad package pattern).
		fmt.Fprintln(s.out, string(line))
		s.badLines++
		return
	}
	key := e.Package + "\x00" + e.Test
	switch {
	case e.Action == "build-output":
		fmt.Fprint(s.out, e.Output)
	case e.Test == "" && e.Action == "output":
		if o := e.Output; o != "PASS\n" && o != "FAIL\n" && !strings.HasPrefix(o, "=== ") {
			fmt.Fprint(s.out, o)
		}
	case e.Test == "" && e.Action == "fail":
		s.failed = append(s.failed, e.Package)
	case e.Test == "" && e.Action == "pass":
		s.passed++
	case e.Test == "" && e.Action == "skip":
		s.noTests++
	case e.Action == "output":
		s.buf[key] = append(s.buf[key], e.Output)
	case e.Action == "fail":
		for _, o := range s.buf[key] {
			fmt.Fprint(s.out, o)
		}
		delete(s.buf, key)
	case e.Action == "skip":
		s.skips = append(s.skips, skip{e.Package, e.Test, skipReason(s.buf[key])})
		delete(s.buf, key)
	case e.Action == "pass":
		delete(s.buf, key)
	}
}

// skipReason is what the test said last before "--- SKIP" (its t.Skip
// message) without the file:line prefix.
func skipReason(lines []string) string {
	reason := ""
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- ") {
			continue
		}
		if m := testLineRe.FindStringSubmatch(t); m != nil {
			reason = m[1]
		} else if reason == "" {
			reason = t
		}
	}
	if reason == "" {
		return "(no reason given)"
	}
	return reason
}

var testLineRe = regexp.MustCompile(`^\S+_test\.go:\d+: (.*)$`)

// finish prints the skips grouped by reason and the closing line.
func (s *summary) finish(exitErr error) {
	if len(s.skips) > 0 {
		type group struct {
			reason string
			tests  []string
		}
		var groups []*group
		for _, k := range s.skips {
			name := shortPkg(k.pkg) + "." + k.test
			i := slices.IndexFunc(groups, func(g *group) bool { return g.reason == k.reason })
			if i < 0 {
				groups = append(groups, &group{reason: k.reason})
				i = len(groups) - 1
			}
			groups[i].tests = append(groups[i].tests, name)
		}
		fmt.Fprintf(s.out, "\nskipped tests (%d), by reason:\n", len(s.skips))
		for _, g := range groups {
			names := g.tests
			more := ""
			if len(names) > 4 {
				more = fmt.Sprintf(" and %d more", len(names)-4)
				names = names[:4]
			}
			fmt.Fprintf(s.out, "  %s\n      %s%s\n", g.reason, strings.Join(names, ", "), more)
		}
	}
	verdict := "ok"
	if len(s.failed) > 0 || exitErr != nil {
		verdict = "FAIL"
	}
	fmt.Fprintf(s.out, "\ntests: %s: %d packages passed, %d failed, %d without tests; %d tests skipped\n",
		verdict, s.passed, len(s.failed), s.noTests, len(s.skips))
	for _, p := range s.failed {
		fmt.Fprintf(s.out, "FAIL %s\n", p)
	}
}

func shortPkg(p string) string {
	return strings.TrimPrefix(p, "github.com/egressguard/egressguard/")
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run runs the command in args (after an optional "--"), summarises its
// test2json stream to out and returns the exit status to use: the
// command's own.
func run(args []string, out, errOut io.Writer) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(errOut, "usage: testsummary -- go test -json [flags] [packages]")
		return 2
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = errOut
	stdout, err := cmd.StdoutPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		fmt.Fprintln(errOut, "testsummary:", err)
		return 2
	}
	s := newSummary(out)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 1<<16), 16<<20)
	for sc.Scan() {
		s.add(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(errOut, "testsummary: reading go test's output:", err)
		_, _ = io.Copy(io.Discard, stdout)
	}
	err = cmd.Wait()
	s.finish(err)
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode()
	case err != nil:
		fmt.Fprintln(errOut, "testsummary:", err)
		return 2
	case len(s.failed) > 0:
		return 1 // a stream that reports failures fails, whatever produced it
	}
	return 0
}
