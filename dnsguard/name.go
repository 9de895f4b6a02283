package dnsguard

import (
	"strings"

	"github.com/miekg/dns"
)

// policyName returns the form of a query name (miekg/dns presentation
// format, as it comes out of a parsed question) that is matched against the
// plan: the labels the upstream will actually look up, joined by dots, with
// no trailing dot. plan.Decide folds case itself.
//
// Presentation escapes are decoded, so "\065pi.stripe.com" is matched as
// "Api.stripe.com" (which the upstream resolves as api.stripe.com). A label
// that contains a literal dot ("api\.paypal.com") is matched with the dot as
// a separator: the stricter reading, since both "api.paypal.com" and a
// subdomain of "paypal.com" are then covered by the plan's patterns.
//
// The common case (no escapes) returns a substring of qname and does not
// allocate.
func policyName(qname string) string {
	if strings.IndexByte(qname, '\\') < 0 {
		return strings.TrimSuffix(qname, ".")
	}
	b := make([]byte, 0, len(qname))
	for i := 0; i < len(qname); i++ {
		c := qname[i]
		if c != '\\' || i+1 >= len(qname) {
			b = append(b, c)
			continue
		}
		if i+3 < len(qname) && isDigit(qname[i+1]) && isDigit(qname[i+2]) && isDigit(qname[i+3]) {
			v := int(qname[i+1]-'0')*100 + int(qname[i+2]-'0')*10 + int(qname[i+3]-'0')
			if v <= 255 {
				b = append(b, byte(v))
				i += 3
				continue
			}
		}
		b = append(b, qname[i+1])
		i++
	}
	return strings.TrimSuffix(string(b), ".")
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// cacheName returns the cache-key form of a query name: ASCII lower case,
// fully qualified. It allocates only when the name has upper-case letters
// (DNS 0x20 clients) or lacks the trailing dot.
func cacheName(qname string) string {
	upper := false
	for i := 0; i < len(qname); i++ {
		if c := qname[i]; 'A' <= c && c <= 'Z' {
			upper = true
			break
		}
	}
	fq := dns.IsFqdn(qname) // a final escaped dot does not count
	if !upper && fq {
		return qname
	}
	b := make([]byte, len(qname), len(qname)+1)
	for i := 0; i < len(qname); i++ {
		c := qname[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	if !fq {
		b = append(b, '.')
	}
	return string(b)
}
