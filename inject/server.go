package inject

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/egressguard/egressguard/internal/tlsprofile"
)

// ShutdownTimeout bounds the graceful shutdown of Serve: in-flight reviews
// finish (the API server waits at most 30 s, 10 s by default, for one),
// then the remaining connections are closed.
const ShutdownTimeout = 10 * time.Second

// Server serves the webhook over HTTPS: POST /mutate (the Handler) and
// GET /healthz.
type Server struct {
	srv   *http.Server
	certs *certReloader
	log   *zap.Logger
}

// NewServer loads the certificate pair of cfg (an error when it does not
// load: the webhook cannot start without one) and prepares the HTTPS
// server. log may be nil.
func NewServer(cfg Config, h *Handler, log *zap.Logger) (*Server, error) {
	if h == nil {
		return nil, errors.New("inject: server: nil handler")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("inject: server: webhook.cert_file and webhook.key_file are required")
	}
	certs, err := newCertReloader(cfg.CertFile, cfg.KeyFile, h.m, log)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/mutate", h)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	errLog, err := zap.NewStdLogAt(log.Named("http"), zap.WarnLevel)
	if err != nil {
		return nil, fmt.Errorf("inject: server: %w", err)
	}
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         tlsprofile.Server(&tls.Config{GetCertificate: certs.GetCertificate}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errLog,
	}
	return &Server{srv: srv, certs: certs, log: log}, nil
}

// Serve serves HTTPS on lis until ctx ends, then shuts down gracefully
// within ShutdownTimeout. It returns nil after a shutdown that ctx asked
// for, else the error that stopped the server. lis is closed on return.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.ServeTLS(lis, "", "") }()
	s.log.Info("webhook.serving", zap.String("address", lis.Addr().String()))
	select {
	case err := <-errc:
		return fmt.Errorf("inject: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if err != nil {
		_ = s.srv.Close()
		err = fmt.Errorf("inject: shutdown: %w", err)
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("inject: serve: %w", serr))
	}
	return err
}

// certReloader hands the TLS stack the certificate pair on disk, re-read
// when either file changes. Every handshake stats both files (two cheap
// syscalls; the API server keeps its connections alive); only a change of
// size, modification time or identity (a new inode, as the kubelet's
// atomic writer and cert-manager produce through symlink swaps) reloads
// them. A pair that does not load (half written, key not matching) is
// logged once per change and the last good pair stays in use.
type certReloader struct {
	certFile, keyFile string
	m                 *Metrics
	log               *zap.Logger

	mu   sync.Mutex
	cert *tls.Certificate
	seen [2]os.FileInfo // of the files when last read, good or bad
}

func newCertReloader(certFile, keyFile string, m *Metrics, log *zap.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, m: m, log: log}
	st, err := r.stat()
	if err != nil {
		return nil, fmt.Errorf("inject: certificate: %w", err)
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("inject: certificate %s, key %s: %w", certFile, keyFile, err)
	}
	r.cert, r.seen = &c, st
	return r, nil
}

func (r *certReloader) stat() ([2]os.FileInfo, error) {
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
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
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
		r.m.certs.WithLabelValues("error").Inc()
		r.log.Error("webhook.certificate.reload",
			zap.String("cert_file", r.certFile), zap.String("key_file", r.keyFile),
			zap.String("keeping", "the last good certificate"), zap.Error(err))
		return r.cert, nil
	}
	r.cert = &c
	r.m.certs.WithLabelValues("ok").Inc()
	fields := []zap.Field{zap.String("cert_file", r.certFile)}
	if c.Leaf != nil {
		fields = append(fields, zap.Time("not_after", c.Leaf.NotAfter), zap.String("serial", c.Leaf.SerialNumber.String()))
	}
	r.log.Info("webhook.certificate.reloaded", fields...)
	return r.cert, nil
}
