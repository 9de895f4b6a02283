package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/egressguard/egressguard/inject"
)

// systemRootFiles are where Linux images keep their system bundle, in the
// order Go's crypto/x509 (root_linux.go) looks for them.
var systemRootFiles = []string{
	"/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu, Alpine, distroless
	"/etc/pki/tls/certs/ca-bundle.crt",                  // Fedora, RHEL 6
	"/etc/ssl/ca-bundle.pem",                            // openSUSE
	"/etc/pki/tls/cacert.pem",                           // OpenELEC
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7
	"/etc/ssl/cert.pem",                                 // Alpine
}

func newTrustBundleCmd(_ *rootOptions) *cobra.Command {
	var anchorsEnv, out, anchorsOut, roots string
	cmd := &cobra.Command{
		Use:   "trust-bundle --out FILE --anchors-out FILE [--anchors-env NAME] [--roots FILE]",
		Short: "Write the system roots plus the staging CA's anchors into a bundle file (the injected egressguard-trust container)",
		Long: `Write the trust bundle of a pod that trusts egressguard's staging CA: the
image's system roots (--roots, else the first of the usual Linux bundle paths)
followed by the anchors (PEM CA certificates) in the environment variable
--anchors-env, into --out; the anchors alone into --anchors-out (for
NODE_EXTRA_CA_CERTS, which adds to Node's own roots). The webhook injects it as
the egressguard-trust init container writing into an emptyDir that application
containers mount over their system bundle paths.

Every anchor must be a CA certificate; anything else in the variable is an
error, so a pod never starts trusting something that is not the staging CA.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			anchors, err := parseAnchors(anchorsEnv, os.Getenv(anchorsEnv))
			if err != nil {
				return err
			}
			system, from, err := readSystemRoots(roots)
			if err != nil {
				return err
			}
			bundle := append(bytes.TrimRight(system, "\n"), '\n')
			bundle = append(bundle, anchors...)
			if err := writeFile(out, bundle); err != nil {
				return err
			}
			if err := writeFile(anchorsOut, anchors); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "trust bundle: %s (system roots from %s + %s)\n", out, from, anchorsEnv)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&anchorsEnv, "anchors-env", inject.EnvTrustAnchors, "environment variable holding the anchors (PEM)")
	f.StringVar(&out, "out", "", "bundle file to write (system roots + anchors)")
	f.StringVar(&anchorsOut, "anchors-out", "", "file to write the anchors alone to")
	f.StringVar(&roots, "roots", "", "system roots file (default: the first of the usual Linux paths that exists)")
	_ = cmd.MarkFlagRequired("out")
	_ = cmd.MarkFlagRequired("anchors-out")
	return cmd
}

// parseAnchors checks that pemText holds CA certificates only, at least
// one, and returns them re-encoded (one PEM block each, nothing else).
func parseAnchors(name, pemText string) ([]byte, error) {
	var out bytes.Buffer
	rest := []byte(pemText)
	for n := 1; ; n++ {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			if n == 1 {
				return nil, fmt.Errorf("trust-bundle: $%s: no PEM certificate", name)
			}
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("trust-bundle: $%s: PEM block %d is %q, want CERTIFICATE", name, n, blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("trust-bundle: $%s: certificate %d: %w", name, n, err)
		}
		if !c.IsCA || !c.BasicConstraintsValid {
			return nil, fmt.Errorf("trust-bundle: $%s: certificate %d (%s) is not a CA", name, n, c.Subject)
		}
		_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: blk.Bytes})
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("trust-bundle: $%s: text after the last PEM certificate", name)
	}
	return out.Bytes(), nil
}

// readSystemRoots reads path, or the first existing system bundle, and
// checks that it holds at least one certificate.
func readSystemRoots(path string) ([]byte, string, error) {
	candidates := systemRootFiles
	if path != "" {
		candidates = []string{path}
	}
	for _, p := range candidates {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) && path == "" {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("trust-bundle: system roots: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			return nil, "", fmt.Errorf("trust-bundle: system roots: %s holds no PEM certificate", p)
		}
		return b, p, nil
	}
	return nil, "", fmt.Errorf("trust-bundle: system roots: none of %v exists (set --roots)", systemRootFiles)
}

// writeFile writes b beside path and renames it into place, readable by
// every UID of the pod (the application containers run as their own).
func writeFile(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".trust-bundle-*")
	if err != nil {
		return fmt.Errorf("trust-bundle: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("trust-bundle: %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("trust-bundle: %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("trust-bundle: %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("trust-bundle: %w", err)
	}
	return nil
}
