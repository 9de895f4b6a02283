package plan

// TLSRedirectNote is the one wording of what a redirect decision means for
// TLS, for every surface that says it (the DNS EDE text, `policy eval`,
// explain, the admin API): the enforcement points differ on purpose.
type TLSRedirectNote struct {
	// Sidecar is what the sidecar does with such a connection: it
	// terminates TLS with a leaf from the staging CA and re-originates TLS
	// to the sandbox (docs/https.md); without a staging CA it denies.
	Sidecar string
	// DNS is what a client that resolves the name gets: a CNAME to the
	// sandbox, which a TLS client that verifies the live name's certificate
	// refuses (fail closed).
	DNS string
}

// FailClosedTLS is the clause every surface ends a TLS redirect note with.
const FailClosedTLS = "TLS clients that verify the live name will fail the certificate check (fail closed)"

// NoteTLSRedirect returns the note for d when d redirects and the
// connection is (or may be) TLS: the sandbox target is TLS, the port is 443
// or the protocol is tls. ok is false otherwise (nothing to say).
func NoteTLSRedirect(d Decision, dest Destination) (n TLSRedirectNote, ok bool) {
	t := d.Target()
	if t == nil || !(t.TLS || dest.Port == 443 || dest.Protocol == "tls") {
		return TLSRedirectNote{}, false
	}
	return TLSRedirectNote{
		Sidecar: "terminates TLS with a staging-CA leaf and re-originates it to the sandbox (pods that trust the staging CA; without a staging CA it is denied)",
		DNS:     "answered with a CNAME to " + t.Host + "; " + FailClosedTLS,
	}, true
}

// Lines renders the note as one line per enforcement point.
func (n TLSRedirectNote) Lines() []string {
	return []string{"sidecar: " + n.Sidecar, "dns: " + n.DNS}
}
