package secretscan

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// ScanGit scans the lines that commits in rangeSpec added ("HEAD" for the
// whole history, "origin/main..HEAD" for a push or a pull request). Each
// changed file is read whole at that commit, so block context (an endpoint
// on an unchanged line next to an added credential) still counts; only
// findings on added lines are reported, with the commit.
func (s *Scanner) ScanGit(ctx context.Context, repo, rangeSpec string) (*Result, error) {
	if rangeSpec == "" {
		rangeSpec = "HEAD"
	}
	if strings.HasPrefix(rangeSpec, "-") {
		return nil, fmt.Errorf("secretscan: git: bad range %q", rangeSpec)
	}
	out, err := git(ctx, repo, "rev-list", "--no-merges", rangeSpec, "--")
	if err != nil {
		return nil, err
	}
	res := &Result{}
	ignoreFP := map[string]bool{}
	for _, extra := range s.opts.IgnoreFiles {
		data, err := readFileLimited(extra)
		if err != nil {
			return nil, fmt.Errorf("secretscan: ignore file: %w", err)
		}
		_, fps := parseIgnore("", data)
		for _, fp := range fps {
			ignoreFP[fp] = true
		}
	}
	for _, commit := range strings.Fields(string(out)) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := s.scanCommit(ctx, repo, commit, res); err != nil {
			return nil, err
		}
	}
	res.Findings = s.filter(res, ignoreFP)
	slices.SortFunc(res.Findings, compareFindings)
	return res, nil
}

func git(ctx context.Context, repo string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", repo, "-c", "core.quotepath=off"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("secretscan: git %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// addedLines parses a zero-context patch into the added line numbers per
// file (new side).
func addedLines(patch []byte) (map[string][]int, []string) {
	added := map[string][]int{}
	var order []string
	var file string
	sc := bufio.NewScanner(bytes.NewReader(patch))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.HasPrefix(line, []byte("+++ ")):
			file = ""
			if p := string(line[4:]); strings.HasPrefix(p, "b/") {
				file = p[2:]
				order = append(order, file)
			}
		case bytes.HasPrefix(line, []byte("@@ ")) && file != "":
			// @@ -a,b +c,d @@
			f := strings.Fields(string(line))
			if len(f) < 3 || !strings.HasPrefix(f[2], "+") {
				continue
			}
			start, count, ok := strings.Cut(f[2][1:], ",")
			c := 1
			if ok {
				c, _ = strconv.Atoi(count)
			}
			n, err := strconv.Atoi(start)
			if err != nil {
				continue
			}
			for i := 0; i < c; i++ {
				added[file] = append(added[file], n+i)
			}
		}
	}
	return added, order
}

func (s *Scanner) scanCommit(ctx context.Context, repo, commit string, res *Result) error {
	patch, err := git(ctx, repo, "diff-tree", "-r", "--root", "--no-commit-id", "-p", "--unified=0", "--no-color", "--no-renames", "--no-ext-diff", "--diff-filter=AM", commit)
	if err != nil {
		return err
	}
	added, order := addedLines(patch)
	for _, file := range order {
		lines := added[file]
		if len(lines) == 0 {
			continue
		}
		obj := commit + ":" + file
		sizeOut, err := git(ctx, repo, "cat-file", "-s", obj)
		if err != nil {
			res.Notices = append(res.Notices, Notice{File: file, Reason: "commit " + commit[:12] + ": cannot read: " + err.Error(), Skipped: true})
			continue
		}
		size, _ := strconv.ParseInt(strings.TrimSpace(string(sizeOut)), 10, 64)
		if size > s.opts.MaxFileSize {
			res.Notices = append(res.Notices, Notice{File: file, Reason: fmt.Sprintf("commit %s: %s exceeds the %s limit; not read", commit[:12], humanSize(size), humanSize(s.opts.MaxFileSize)), Skipped: true})
			continue
		}
		content, err := git(ctx, repo, "cat-file", "blob", obj)
		if err != nil {
			return err
		}
		res.Files++
		res.Bytes += int64(len(content))
		fs, ns := s.d.Scan(file, content)
		for i := range ns {
			ns[i].Reason = "commit " + commit[:12] + ": " + ns[i].Reason
		}
		res.Notices = append(res.Notices, ns...)
		for _, f := range fs {
			if _, ok := slices.BinarySearch(lines, f.Line); ok {
				f.Commit = commit
				res.Findings = append(res.Findings, f)
			}
		}
	}
	return nil
}

func readFileLimited(path string) ([]byte, error) {
	return os.ReadFile(path)
}
