package capture

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// Runner runs one command with stdin and returns its standard output. The
// error of a failed command should carry its standard error (ExecRunner's
// *CommandError does) and wrap exec.ErrNotFound when the program is missing.
type Runner interface {
	Run(ctx context.Context, name string, args []string, stdin []byte) ([]byte, error)
}

// ExecRunner runs commands with os/exec.
type ExecRunner struct{}

// CommandError is a command that failed, with what it wrote to stderr.
type CommandError struct {
	Name   string
	Args   []string
	Stderr string
	Err    error
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("%s %s: %v", e.Name, strings.Join(e.Args, " "), e.Err)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

func (e *CommandError) Unwrap() error { return e.Err }

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, name string, args []string, stdin []byte) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		return stdout.Bytes(), &CommandError{Name: name, Args: args, Stderr: stderr.String(), Err: err}
	}
	return stdout.Bytes(), nil
}

// IPv6Mode says whether Apply installs the IPv6 rules.
type IPv6Mode string

// IPv6 modes. Auto is the default and fails closed: it skips IPv6 only
// when the network namespace has no IPv6 at all, so a dual-stack pod
// without ip6tables fails its init container rather than sending IPv6
// egress around the sidecar.
const (
	// IPv6Auto applies the IPv6 rules when the namespace has IPv6
	// (/proc/net/if_inet6 exists and IPv6 is not disabled by sysctl).
	IPv6Auto IPv6Mode = "auto"
	// IPv6On always applies them; a missing ip6tables-restore is an error.
	IPv6On IPv6Mode = "on"
	// IPv6Off never does: IPv6 egress, if any, is not captured.
	IPv6Off IPv6Mode = "off"
)

// ParseIPv6Mode parses auto, on or off ("" is auto).
func ParseIPv6Mode(s string) (IPv6Mode, error) {
	switch m := IPv6Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case "":
		return IPv6Auto, nil
	case IPv6Auto, IPv6On, IPv6Off:
		return m, nil
	}
	return "", fmt.Errorf("capture: ipv6 mode %q: want auto, on or off", s)
}

// Backend picks the iptables variant. The default runs whatever
// iptables-restore is on PATH (Debian's alternatives choose nft); legacy
// and nft pin the variant, which must match what the node's other rules
// use when both are present.
type Backend string

// Backends.
const (
	BackendDefault Backend = ""
	BackendLegacy  Backend = "legacy"
	BackendNFT     Backend = "nft"
)

// ParseBackend parses default (or ""), legacy or nft.
func ParseBackend(s string) (Backend, error) {
	switch b := Backend(strings.ToLower(strings.TrimSpace(s))); b {
	case "default", "":
		return BackendDefault, nil
	case BackendLegacy, BackendNFT:
		return b, nil
	}
	return "", fmt.Errorf("capture: iptables backend %q: want default, legacy or nft", s)
}

// command names the program for family f, e.g. ip6tables-legacy-restore.
func (b Backend) command(f Family, tool string) string {
	name := "iptables"
	if f == IPv6 {
		name = "ip6tables"
	}
	if b != BackendDefault {
		name += "-" + string(b)
	}
	return name + "-" + tool
}

// ApplyOptions control how Apply installs the rules.
type ApplyOptions struct {
	IPv6    IPv6Mode // "" is IPv6Auto
	Backend Backend
	// HasIPv6 reports whether this network namespace has IPv6 (for
	// IPv6Auto); nil reads /proc/net/if_inet6 and the disable_ipv6 sysctl.
	HasIPv6 func() (bool, error)
}

// Result is what Apply installed.
type Result struct {
	// IPv4 and IPv6 are the documents fed to iptables-restore and
	// ip6tables-restore ("" when that family was not applied).
	IPv4, IPv6 string
	// IPv6Skipped says why the IPv6 rules were not applied ("" if they were).
	IPv6Skipped string
}

// Apply installs the rules for o with iptables-restore --noflush (and
// ip6tables-restore, see IPv6Mode). Only the egressguard chains are
// replaced (declaring them in the restore input flushes them); other
// tables, chains and rules are left alone. The jump from OUTPUT is added
// only when iptables-save shows it missing, so applying twice leaves the
// same ruleset. Each family is one iptables-restore transaction: it is
// installed whole or not at all.
func Apply(ctx context.Context, o Options, r Runner, ao ApplyOptions) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	n := normalize(o)
	return forFamilies(ao, func(f Family) (string, error) {
		doc, err := applyFamily(ctx, n, f, r, ao.Backend)
		if f == IPv6 && errors.Is(err, exec.ErrNotFound) {
			err = fmt.Errorf("%w; this network namespace has IPv6, so IPv6 egress would bypass the sidecar: install ip6tables or pass --ipv6=off to accept that", err)
		}
		return doc, err
	})
}

// forFamilies runs do for IPv4, then for IPv6 as ao.IPv6 decides (off:
// never; auto: when the namespace has IPv6; on: always), and collects the
// documents do returns. It stops at the first error.
func forFamilies(ao ApplyOptions, do func(Family) (string, error)) (*Result, error) {
	mode := ao.IPv6
	if mode == "" {
		mode = IPv6Auto
	}
	if _, err := ParseIPv6Mode(string(mode)); err != nil {
		return nil, err
	}
	res := &Result{}
	var err error
	if res.IPv4, err = do(IPv4); err != nil {
		return res, err
	}
	switch mode {
	case IPv6Off:
		res.IPv6Skipped = "--ipv6=off"
		return res, nil
	case IPv6Auto:
		has := ao.HasIPv6
		if has == nil {
			has = namespaceHasIPv6
		}
		ok, err := has()
		if err != nil {
			return res, fmt.Errorf("capture: detect IPv6 (use --ipv6=on or --ipv6=off to decide): %w", err)
		}
		if !ok {
			res.IPv6Skipped = "this network namespace has no IPv6"
			return res, nil
		}
	}
	res.IPv6, err = do(IPv6)
	return res, err
}

func applyFamily(ctx context.Context, o Options, f Family, r Runner, b Backend) (string, error) {
	save, restore := b.command(f, "save"), b.command(f, "restore")
	current, err := r.Run(ctx, save, []string{"-t", "nat"}, nil)
	if err != nil {
		return "", fmt.Errorf("capture: read the %s nat table: %w", f, err)
	}
	doc := render(o, f, !hasHook(current))
	if _, err := r.Run(ctx, restore, []string{"--noflush"}, []byte(doc)); err != nil {
		return "", fmt.Errorf("capture: install the %s rules: %w", f, err)
	}
	return doc, nil
}

// hasHook reports whether iptables-save output already jumps from OUTPUT
// into OutputChain. Any such jump counts, so a hook written by hand or by
// an older version is kept rather than doubled.
func hasHook(save []byte) bool {
	return slices.ContainsFunc(natLines(save), isHook)
}

// isHook reports whether an iptables-save line jumps from OUTPUT into OutputChain.
func isHook(line string) bool {
	return strings.HasPrefix(line, "-A OUTPUT ") && hasFlagValue(strings.Fields(line), "-j", OutputChain)
}

// natLines are the lines of iptables-save output inside the nat table.
func natLines(save []byte) []string {
	var out []string
	table := ""
	sc := bufio.NewScanner(bytes.NewReader(save))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if t, ok := strings.CutPrefix(line, "*"); ok {
			table = t
		} else if table == "nat" {
			out = append(out, line)
		}
	}
	return out
}

// hasFlagValue reports whether fields contains flag immediately followed by value.
func hasFlagValue(fields []string, flag, value string) bool {
	for i := 0; i+1 < len(fields); i++ {
		if fields[i] == flag && fields[i+1] == value {
			return true
		}
	}
	return false
}

// namespaceHasIPv6 reports whether the current network namespace has IPv6.
func namespaceHasIPv6() (bool, error) {
	if _, err := os.Stat("/proc/net/if_inet6"); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return true, nil
		}
		return false, err
	}
	return strings.TrimSpace(string(b)) != "1", nil
}

// Cleanup removes what Apply installs and nothing else: in each family's
// nat table, the jumps from OUTPUT into OutputChain, then OutputChain and
// RedirectChain themselves, in one iptables-restore --noflush transaction
// per family (removed whole or not at all). Other rules and chains stay.
// A family whose nat table holds none of egressguard's chains or hooks is
// not touched, so Cleanup twice is harmless. IPv6 follows ao.IPv6 as in
// Apply, except that a missing ip6tables under auto means nothing was
// installed there; that is not an error. A rule outside OUTPUT that jumps
// into an egressguard chain (not one Apply writes) makes the deletion fail
// and is reported with iptables' message.
func Cleanup(ctx context.Context, r Runner, ao ApplyOptions) (*Result, error) {
	noIP6Tables := false
	res, err := forFamilies(ao, func(f Family) (string, error) {
		doc, err := cleanupFamily(ctx, f, r, ao.Backend)
		if f == IPv6 && ao.IPv6 != IPv6On && errors.Is(err, exec.ErrNotFound) {
			noIP6Tables = true
			return "", nil
		}
		return doc, err
	})
	if noIP6Tables {
		res.IPv6Skipped = "ip6tables is not installed, so no IPv6 rules were"
	}
	return res, err
}

// cleanupFamily returns the document it fed to iptables-restore ("" when
// there was nothing to remove).
func cleanupFamily(ctx context.Context, f Family, r Runner, b Backend) (string, error) {
	save, restore := b.command(f, "save"), b.command(f, "restore")
	current, err := r.Run(ctx, save, []string{"-t", "nat"}, nil)
	if err != nil {
		return "", fmt.Errorf("capture: read the %s nat table: %w", f, err)
	}
	doc := renderCleanup(current)
	if doc == "" {
		return "", nil
	}
	if _, err := r.Run(ctx, restore, []string{"--noflush"}, []byte(doc)); err != nil {
		return "", fmt.Errorf("capture: remove the %s rules: %w", f, err)
	}
	return doc, nil
}

// renderCleanup writes the iptables-restore document that undoes Apply on
// the nat table in save (iptables-save output): declaring a chain flushes
// it, each OUTPUT hook is deleted by its own spec, then both chains go.
// It returns "" when save holds neither chain nor hook.
func renderCleanup(save []byte) string {
	var hooks []string
	chains := map[string]bool{}
	for _, line := range natLines(save) {
		switch {
		case strings.HasPrefix(line, ":"+OutputChain+" "), strings.HasPrefix(line, ":"+RedirectChain+" "):
			chains[strings.Fields(line[1:])[0]] = true
		case isHook(line):
			hooks = append(hooks, "-D"+strings.TrimPrefix(line, "-A"))
		}
	}
	if len(hooks) == 0 && len(chains) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("# egressguard: remove the traffic capture rules\n*nat\n")
	for _, c := range []string{OutputChain, RedirectChain} {
		if chains[c] {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
	}
	for _, h := range hooks {
		b.WriteString(h + "\n")
	}
	for _, c := range []string{OutputChain, RedirectChain} {
		if chains[c] {
			fmt.Fprintf(&b, "-X %s\n", c)
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}
