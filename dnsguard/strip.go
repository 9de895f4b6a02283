package dnsguard

import (
	"strings"

	"github.com/miekg/dns"

	"github.com/egressguard/egressguard/policy/plan"
)

// carriedNames lists, once each and in policy form, the names a response
// carries besides the question: the owner of every record in the answer,
// authority and additional sections, and the targets of MX, SRV and NS
// records (which lead a client, or a resolver following glue, there).
func carriedNames(qname string, m *dns.Msg) []string {
	q := strings.ToLower(policyName(qname))
	var out []string
	add := func(n string) {
		n = strings.ToLower(policyName(n))
		if n == "" || n == q {
			return
		}
		for _, have := range out {
			if have == n {
				return
			}
		}
		out = append(out, n)
	}
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if rr.Header().Rrtype == dns.TypeOPT {
				continue
			}
			add(rr.Header().Name)
			if t := pointsTo(rr); t != "" {
				add(t)
			}
		}
	}
	return out
}

// pointsTo is the target name of an MX, SRV or NS record, "" otherwise.
func pointsTo(rr dns.RR) string {
	switch rr := rr.(type) {
	case *dns.MX:
		return rr.Mx
	case *dns.SRV:
		return rr.Target
	case *dns.NS:
		return rr.Ns
	}
	return ""
}

// stripProduction removes from an otherwise allowed answer every record
// owned by a production name (or an MX, SRV or NS record pointing to one):
// glue and extra records an upstream adds must not hand a client production
// addresses or names it did not ask for. A name is production for p when an
// explicit rule denies or redirects it at DNS (the plan's default does not
// count, as for answer targets); a name that cannot be put in normal form is
// refused by the plan and so stripped too. Report-mode rules strip nothing.
// The stripped entry is memoised with the verdict, per plan.
func (s *Server) stripProduction(e *entry, p *plan.Plan, c *answerCheck) {
	var prod map[string]bool
	for _, n := range e.owners {
		d := p.Decide(plan.Destination{Host: n, Protocol: plan.ProtocolDNS})
		if d.RuleID() == plan.DefaultRuleID || d.Action == plan.ActionAllow {
			continue
		}
		if prod == nil {
			prod = make(map[string]bool)
			c.strip.host, c.strip.dec = n, d
		}
		prod[n] = true
	}
	if prod == nil {
		return
	}
	m := new(dns.Msg)
	err := m.Unpack(e.wire)
	if err == nil {
		keep := func(rrs []dns.RR) []dns.RR {
			out := rrs[:0]
			for _, rr := range rrs {
				if prod[strings.ToLower(policyName(rr.Header().Name))] || prod[strings.ToLower(policyName(pointsTo(rr)))] {
					continue
				}
				out = append(out, rr)
			}
			return out
		}
		m.Answer, m.Ns, m.Extra = keep(m.Answer), keep(m.Ns), keep(m.Extra)
		m.Compress = true
		var wire []byte
		if wire, err = m.Pack(); err == nil {
			var ttls []uint16
			if ttls, err = ttlOffsets(wire); err == nil {
				c.stripped = &entry{wire: wire, ttls: ttls, rcode: e.rcode, stored: e.stored, expires: e.expires}
				return
			}
		}
	}
	// The cached answer cannot be rewritten: refuse it whole (fail closed).
	c.ok, c.dec, c.what, c.host = false, c.strip.dec, "records of "+c.strip.host+" (not strippable: "+err.Error()+")", c.strip.host
	c.dec.Action = plan.ActionDeny
}
