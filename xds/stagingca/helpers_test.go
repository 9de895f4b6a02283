package stagingca

import (
	"crypto/x509"

	"context"
	"go.uber.org/zap"
	"testing"
)

func contextWithCancel(t testing.TB) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, cancel
}

func nopLogger() *zap.Logger { return zap.NewNop() }

// anchorLike is a certificate carrying only name constraints, for admits.
func anchorLike(permitted, excluded []string) *x509.Certificate {
	return &x509.Certificate{PermittedDNSDomains: permitted, ExcludedDNSDomains: excluded}
}
