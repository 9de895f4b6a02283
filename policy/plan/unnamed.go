package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// UnnamedTLSRuleID is the ID of the rule WithUnnamedTLS adds.
const UnnamedTLSRuleID = "unnamed-tls"

// WithUnnamedTLS returns a copy of p whose TLS connections without a
// usable server name (none, or one ending in a dot, which matches no
// listed name) to an address no CIDR rule names get action a instead of
// the plan's default: operators set it to deny so that a client cannot
// leave out or mangle its SNI to reach a production host that is not in a
// catalog CIDR. It applies where a destination's name is unknown only
// because the client withheld it (TLS at the sidecar); Decide, which is
// told whether a name is known, is unchanged. The fingerprint covers the
// setting.
func (p *Plan) WithUnnamedTLS(a Action) (*Plan, error) {
	if a > ActionDeny {
		return nil, fmt.Errorf("unnamed_tls: must be allow or deny, not %s", a)
	}
	q := *p
	q.unnamedTLS = &Rule{
		ID:     UnnamedTLSRuleID,
		Action: a,
		Reason: fmt.Sprintf("TLS without a usable server name (none, or one ending in a dot) to an address no CIDR rule names: %s", a),
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00unnamed-tls=%s", p.fp, a))
	q.fp = hex.EncodeToString(sum[:])
	return &q, nil
}

// UnnamedTLS is the rule that decides TLS without a usable server name to
// an address no CIDR rule names: WithUnnamedTLS's, else the default rule.
func (p *Plan) UnnamedTLS() *Rule {
	if p.unnamedTLS != nil {
		return p.unnamedTLS
	}
	return &p.def
}
