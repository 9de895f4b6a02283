package inject

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/egressguard/egressguard/internal/certreload"
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
	certs *certreload.Reloader
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
	certs, err := certreload.New("webhook", cfg.CertFile, cfg.KeyFile, h.m.certReloaded, log)
	if err != nil {
		return nil, fmt.Errorf("inject: %w", err)
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
