package main

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tourStep is one "$ command" of a console block in README.md and the lines
// the README shows after it ("..." lines are elisions).
type tourStep struct {
	line int
	cmd  string
	want []string
}

func readTour(t *testing.T, path string) []tourStep {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var steps []tourStep
	in := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		switch {
		case l == "```console":
			in = true
		case in && l == "```":
			in = false
		case in && strings.HasPrefix(l, "$ "):
			steps = append(steps, tourStep{line: n, cmd: strings.TrimPrefix(l, "$ ")})
		case in && len(steps) > 0 && l != "...":
			steps[len(steps)-1].want = append(steps[len(steps)-1].want, l)
		}
	}
	require.NoError(t, sc.Err())
	return steps
}

// startTourGuard runs serve in-process on ports it picks, with a local
// upstream, from cfg (the embedded defaults or the example config file).
func startTourGuard(t *testing.T, cfg serveConfig) string {
	t.Helper()
	cfg.DNS.Listen = "127.0.0.1:0"
	cfg.DNS.Upstreams = []string{startUpstream(t)}
	cfg.XDS.Listen, cfg.Admin.Listen, cfg.Decisions.File = "", "", ""
	require.NoError(t, cfg.validate())
	return startGuard(t, cfg).DNS.String()
}

// checkDig asks the guard what the README's dig asks and checks every line
// the README shows: the status, the EDE text and the records.
func checkDig(t *testing.T, addr string, st tourStep) {
	t.Helper()
	f := strings.Fields(st.cmd)
	require.Len(t, f, 5, "README line %d: want `dig @127.0.0.1 -p 5353 NAME`", st.line)
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(f[4]), dns.TypeA)
	m.SetEdns0(1232, false)
	r, _, err := (&dns.Client{Timeout: 10 * time.Second}).Exchange(m, addr)
	require.NoError(t, err, "README line %d", st.line)
	var ede []string
	if opt := r.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				ede = append(ede, e.ExtraText)
			}
		}
	}
	records := append(append([]dns.RR{}, r.Answer...), r.Ns...)
	for _, w := range st.want {
		switch {
		case strings.Contains(w, "status: "):
			status := strings.TrimSuffix(strings.Fields(w[strings.Index(w, "status: "):])[1], ",")
			assert.Equal(t, status, dns.RcodeToString[r.Rcode], "README line %d: %s", st.line, st.cmd)
		case strings.HasPrefix(w, "; EDE: 15 (Blocked): ("):
			text := strings.TrimSuffix(strings.TrimPrefix(w, "; EDE: 15 (Blocked): ("), ")")
			assert.Contains(t, ede, text, "README line %d: %s", st.line, st.cmd)
		default:
			rr, err := dns.NewRR(w)
			require.NoError(t, err, "README line %d: %q is not a record", st.line, w)
			found := false
			for _, got := range records {
				found = found || dns.IsDuplicate(rr, got) && rr.Header().Ttl == got.Header().Ttl
			}
			assert.True(t, found, "README line %d: %s: no record %q in %v", st.line, st.cmd, w, records)
		}
	}
}

// TestReadmeTour runs the README's tour and checks its output, so the README
// cannot drift from what the commands print.
func TestReadmeTour(t *testing.T) {
	t.Chdir("../..")
	steps := readTour(t, "README.md")
	require.NotEmpty(t, steps)
	var guard string
	ran := 0
	for _, st := range steps {
		switch {
		case st.cmd == "make run":
			guard = startTourGuard(t, defaultServeConfig())
		case strings.HasPrefix(st.cmd, "bin/egressguard serve --config "):
			cfg, err := loadServeConfig(strings.TrimPrefix(st.cmd, "bin/egressguard serve --config "))
			require.NoError(t, err)
			guard = startTourGuard(t, cfg)
		case strings.HasPrefix(st.cmd, "dig "):
			require.NotEmpty(t, guard, "README line %d: dig before the guard is started", st.line)
			checkDig(t, guard, st)
		case strings.HasPrefix(st.cmd, "bin/egressguard "):
			out, err := runCLI(t, shellFields(strings.TrimPrefix(st.cmd, "bin/egressguard "))...)
			if err != nil && !strings.HasPrefix(st.cmd, "bin/egressguard scan ") {
				t.Fatalf("README line %d: %s: %v", st.line, st.cmd, err)
			}
			// The shown lines appear, in order, in what the command prints.
			got := strings.Split(out, "\n")
			i := 0
			for _, w := range st.want {
				for i < len(got) && got[i] != w {
					i++
				}
				if !assert.Less(t, i, len(got), "README line %d: %s: line %q not printed (in order); got:\n%s", st.line, st.cmd, w, out) {
					break
				}
			}
		default:
			continue // curl, cat: not part of the checked tour
		}
		ran++
	}
	assert.GreaterOrEqual(t, ran, 8, "the tour's commands were found and run")
}

// shellFields splits a README command line as a POSIX shell would for the
// quoting the README uses: blanks separate words, single quotes keep
// blanks inside one.
func shellFields(s string) []string {
	var out []string
	var word strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '\'':
			quoted, inWord = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				out = append(out, word.String())
				word.Reset()
				inWord = false
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, word.String())
	}
	return out
}
