package secretscan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"go.uber.org/zap"
)

// IgnoreFileName is egressguard's ignore file: .gitignore syntax, plus
// finding fingerprints (one per line) to ignore single findings.
const IgnoreFileName = ".egressguardignore"

// DefaultMaxFileSize is the largest file scanned; larger files are skipped
// without being read.
const DefaultMaxFileSize = 25 << 20

// Options tune a scan.
type Options struct {
	// MaxFileSize skips larger files (0: DefaultMaxFileSize).
	MaxFileSize int64
	// Workers scanning files in parallel (0: GOMAXPROCS).
	Workers int
	// NoGitignore scans files that .gitignore files exclude.
	NoGitignore bool
	// IgnoreFiles are extra ignore files (paths relative to the scan root
	// they are applied to; fingerprints apply everywhere).
	IgnoreFiles []string
	// IncludeAllowed keeps findings silenced by an egressguard:allow comment.
	IncludeAllowed bool

	open func(string) (*os.File, error) // tests: inject open failures
}

// Result is the outcome of a scan.
type Result struct {
	Findings []Finding `json:"findings"`
	Notices  []Notice  `json:"notices,omitempty"`
	Files    int       `json:"files"`
	Bytes    int64     `json:"bytes"`
	// Ignored counts findings dropped by ignore-file fingerprints or a
	// baseline; Allowed those silenced by an inline comment.
	Ignored int `json:"ignored,omitempty"`
	Allowed int `json:"allowed,omitempty"`
}

// Scanner walks files and runs a Detector over them.
type Scanner struct {
	d    *Detector
	opts Options
	log  *zap.Logger
}

// NewScanner builds a scanner.
func NewScanner(d *Detector, opts Options, log *zap.Logger) *Scanner {
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = DefaultMaxFileSize
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.open == nil {
		opts.open = os.Open
	}
	return &Scanner{d: d, opts: opts, log: log.Named("secretscan")}
}

type job struct {
	path    string // to open
	display string // in reports
	size    int64
}

type collector struct {
	mu       sync.Mutex
	res      Result
	bytes    atomic.Int64
	ignoreFP map[string]bool
}

func (c *collector) add(fs []Finding, ns []Notice) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.res.Findings = append(c.res.Findings, fs...)
	c.res.Notices = append(c.res.Notices, ns...)
}

func (c *collector) notice(n Notice) { c.add(nil, []Notice{n}) }

// ScanPaths scans files and directories. "-" is standard input (read
// through stdin). Errors are for paths that cannot be scanned at all (a
// missing command-line path); damaged files are notices.
func (s *Scanner) ScanPaths(ctx context.Context, paths []string, stdin io.Reader) (*Result, error) {
	col := &collector{ignoreFP: map[string]bool{}}
	jobs := make(chan job, 4*s.opts.Workers)
	var wg sync.WaitGroup
	for range s.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 64<<10)
			for j := range jobs {
				buf = s.scanFile(j, buf, col)
			}
		}()
	}
	var errs []error
	for _, p := range paths {
		if p == "-" {
			if stdin == nil {
				errs = append(errs, errors.New("secretscan: -: no standard input"))
				continue
			}
			data, err := io.ReadAll(io.LimitReader(stdin, s.opts.MaxFileSize+1))
			if err != nil {
				errs = append(errs, fmt.Errorf("secretscan: reading standard input: %w", err))
				continue
			}
			if int64(len(data)) > s.opts.MaxFileSize {
				col.notice(Notice{File: "-", Reason: fmt.Sprintf("standard input exceeds the %s limit", humanSize(s.opts.MaxFileSize)), Skipped: true})
				continue
			}
			col.bytes.Add(int64(len(data)))
			fs, ns := s.d.Scan("-", data)
			col.add(fs, ns)
			col.mu.Lock()
			col.res.Files++
			col.mu.Unlock()
			continue
		}
		if err := s.walkRoot(ctx, p, jobs, col); err != nil {
			errs = append(errs, err)
		}
	}
	close(jobs)
	wg.Wait()
	res := &col.res
	res.Bytes = col.bytes.Load()
	res.Findings = s.filter(res, col.ignoreFP)
	s.log.Debug("scan done", zap.Int("files", res.Files), zap.Int64("bytes", res.Bytes),
		zap.Int("findings", len(res.Findings)), zap.Int("notices", len(res.Notices)), zap.Int("ignored", res.Ignored), zap.Int("allowed", res.Allowed))
	slices.SortFunc(res.Findings, compareFindings)
	slices.SortFunc(res.Notices, func(a, b Notice) int { return strings.Compare(a.File, b.File)*2 + cmpInt(a.Line, b.Line) })
	return res, errors.Join(errs...)
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// filter drops findings ignored by fingerprint and those allowed inline.
func (s *Scanner) filter(res *Result, ignoreFP map[string]bool) []Finding {
	out := res.Findings[:0]
	for _, f := range res.Findings {
		switch {
		case ignoreFP[f.Fingerprint]:
			res.Ignored++
		case f.Allowed != "" && !s.opts.IncludeAllowed:
			res.Allowed++
		default:
			out = append(out, f)
		}
	}
	return out
}

func (s *Scanner) scanFile(j job, buf []byte, col *collector) []byte {
	f, err := s.opts.open(j.path)
	if err != nil {
		col.notice(Notice{File: j.display, Reason: "cannot read: " + errReason(err), Skipped: true})
		return buf
	}
	defer f.Close()
	// Read at most the limit plus one byte: a file that grew past the limit
	// since it was listed is still skipped without reading it all.
	if int64(cap(buf)) < j.size+1 && j.size < s.opts.MaxFileSize {
		buf = make([]byte, 0, j.size+1)
	}
	buf = buf[:0]
	n, err := readAtMost(f, &buf, s.opts.MaxFileSize+1)
	if err != nil {
		col.notice(Notice{File: j.display, Reason: "cannot read: " + errReason(err), Skipped: true})
		return buf
	}
	if int64(n) > s.opts.MaxFileSize {
		col.notice(Notice{File: j.display, Reason: fmt.Sprintf("larger than the %s limit (--max-file-size)", humanSize(s.opts.MaxFileSize)), Skipped: true})
		return buf
	}
	col.bytes.Add(int64(n))
	fs, ns := s.d.Scan(j.display, buf[:n])
	col.add(fs, ns)
	col.mu.Lock()
	col.res.Files++
	col.mu.Unlock()
	if cap(buf) > 8<<20 { // do not keep a huge buffer per worker
		buf = make([]byte, 0, 64<<10)
	}
	return buf
}

func readAtMost(r io.Reader, buf *[]byte, limit int64) (int, error) {
	b := *buf
	for int64(len(b)) < limit {
		if len(b) == cap(b) {
			nc := 2 * cap(b)
			if nc == 0 {
				nc = 64 << 10
			}
			if int64(nc) > limit {
				nc = int(limit)
			}
			nb := make([]byte, len(b), nc)
			copy(nb, b)
			b = nb
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			*buf = b
			return len(b), err
		}
	}
	*buf = b
	return len(b), nil
}

func errReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	switch {
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	case errors.Is(err, syscall.ELOOP):
		return "symlink loop"
	case errors.Is(err, syscall.EISDIR):
		return "is a directory"
	}
	return err.Error()
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// walkRoot lists one command-line path.
func (s *Scanner) walkRoot(ctx context.Context, root string, jobs chan<- job, col *collector) error {
	fi, err := os.Stat(root)
	if err != nil {
		return fmt.Errorf("secretscan: %s: %w", root, err)
	}
	var stack ignoreStack
	for _, extra := range s.opts.IgnoreFiles {
		data, err := os.ReadFile(extra)
		if err != nil {
			return fmt.Errorf("secretscan: ignore file: %w", err)
		}
		l, fps := parseIgnore("", data)
		stack = append(stack, l)
		col.mu.Lock()
		for _, fp := range fps {
			col.ignoreFP[fp] = true
		}
		col.mu.Unlock()
	}
	if !fi.IsDir() {
		return s.enqueue(ctx, root, root, fi, jobs, col)
	}
	w := walker{s: s, ctx: ctx, jobs: jobs, col: col, visiting: map[fileID]bool{}}
	return w.dir(root, "", stack)
}

func (s *Scanner) enqueue(ctx context.Context, path, display string, fi fs.FileInfo, jobs chan<- job, col *collector) error {
	if !fi.Mode().IsRegular() {
		col.notice(Notice{File: display, Reason: "not a regular file (" + fi.Mode().Type().String() + ")", Skipped: true})
		return nil
	}
	if fi.Size() > s.opts.MaxFileSize {
		col.notice(Notice{File: display, Reason: fmt.Sprintf("%s exceeds the %s limit (--max-file-size); not read", humanSize(fi.Size()), humanSize(s.opts.MaxFileSize)), Skipped: true})
		return nil
	}
	select {
	case jobs <- job{path: path, display: display, size: fi.Size()}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type fileID struct{ dev, ino uint64 }

func idOf(fi fs.FileInfo) (fileID, bool) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileID{uint64(st.Dev), uint64(st.Ino)}, true //nolint:unconvert // Dev is uint32 on some platforms
	}
	return fileID{}, false
}

type walker struct {
	s        *Scanner
	ctx      context.Context
	jobs     chan<- job
	col      *collector
	visiting map[fileID]bool // directories on the current path (symlink loops)
}

// dir walks one directory. rel is its path relative to the root.
func (w *walker) dir(path, rel string, stack ignoreStack) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	if fi, err := os.Stat(path); err == nil {
		if id, ok := idOf(fi); ok {
			if w.visiting[id] {
				w.col.notice(Notice{File: path, Reason: "symlink loop (directory already being scanned)", Skipped: true})
				return nil
			}
			w.visiting[id] = true
			defer delete(w.visiting, id)
		}
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		w.col.notice(Notice{File: path, Reason: "cannot list directory: " + errReason(err), Skipped: true})
		return nil
	}
	for _, name := range []string{".gitignore", IgnoreFileName} {
		if name == ".gitignore" && w.s.opts.NoGitignore {
			continue
		}
		data, err := os.ReadFile(filepath.Join(path, name))
		if err != nil {
			continue
		}
		l, fps := parseIgnore(rel, data)
		stack = append(stack[:len(stack):len(stack)], l)
		if name == IgnoreFileName {
			w.col.mu.Lock()
			for _, fp := range fps {
				w.col.ignoreFP[fp] = true
			}
			w.col.mu.Unlock()
		}
	}
	for _, e := range entries {
		name := e.Name()
		if name == ".git" && e.IsDir() {
			continue
		}
		full := filepath.Join(path, name)
		r := name
		if rel != "" {
			r = rel + "/" + name
		}
		fi, err := os.Stat(full) // follows symlinks
		if err != nil {
			if e.Type()&fs.ModeSymlink != 0 {
				w.col.notice(Notice{File: full, Reason: "broken symlink: " + errReason(err), Skipped: true})
			} else {
				w.col.notice(Notice{File: full, Reason: "cannot stat: " + errReason(err), Skipped: true})
			}
			continue
		}
		if stack.ignored(r, fi.IsDir()) {
			continue
		}
		if fi.IsDir() {
			if err := w.dir(full, r, stack); err != nil {
				return err
			}
			continue
		}
		if err := w.s.enqueue(w.ctx, full, full, fi, w.jobs, w.col); err != nil {
			return err
		}
	}
	return nil
}
