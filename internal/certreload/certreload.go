// Package certreload serves a TLS certificate pair from disk and re-reads it
// when it changes, for servers whose certificates rotate under them
// (cert-manager, the kubelet's Secret volume updates).
package certreload

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"

	"go.uber.org/zap"
)

// Reloader hands the TLS stack the certificate pair on disk, re-read when
// either file changes. Every handshake stats both files (two cheap
// syscalls; clients keep their connections alive); only a change of size,
// modification time or identity (a new inode, as the kubelet's atomic
// writer and cert-manager produce through symlink swaps) reloads them. A
// pair that does not load (half written, key not matching) is logged once
// per change and the last good pair stays in use.
type Reloader struct {
	name              string // log event prefix: "<name>.certificate.reload(ed)"
	certFile, keyFile string
	onReload          func(ok bool)
	log               *zap.Logger

	mu   sync.Mutex
	cert *tls.Certificate
	seen [2]os.FileInfo // of the files when last read, good or bad
}

// New loads the pair once (an error names both files) and returns a
// Reloader. onReload, if not nil, is called after each re-read with
// whether the new pair loaded (for a metric).
func New(name, certFile, keyFile string, onReload func(ok bool), log *zap.Logger) (*Reloader, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if onReload == nil {
		onReload = func(bool) {}
	}
	r := &Reloader{name: name, certFile: certFile, keyFile: keyFile, onReload: onReload, log: log}
	st, err := r.stat()
	if err != nil {
		return nil, fmt.Errorf("%s: certificate: %w", name, err)
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: certificate %s, key %s: %w", name, certFile, keyFile, err)
	}
	r.cert, r.seen = &c, st
	return r, nil
}

func (r *Reloader) stat() ([2]os.FileInfo, error) {
	var st [2]os.FileInfo
	for i, f := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return st, err
		}
		st[i] = fi
	}
	return st, nil
}

func sameFile(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// GetCertificate implements tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.stat()
	if err != nil {
		// Files missing for a moment (a rotation in progress): keep serving.
		return r.cert, nil
	}
	if sameFile(st[0], r.seen[0]) && sameFile(st[1], r.seen[1]) {
		return r.cert, nil
	}
	r.seen = st
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		r.onReload(false)
		r.log.Error(r.name+".certificate.reload",
			zap.String("cert_file", r.certFile), zap.String("key_file", r.keyFile),
			zap.String("keeping", "the last good certificate"), zap.Error(err))
		return r.cert, nil
	}
	r.cert = &c
	r.onReload(true)
	fields := []zap.Field{zap.String("cert_file", r.certFile)}
	if c.Leaf != nil {
		fields = append(fields, zap.Time("not_after", c.Leaf.NotAfter), zap.String("serial", c.Leaf.SerialNumber.String()))
	}
	r.log.Info(r.name+".certificate.reloaded", fields...)
	return r.cert, nil
}
