// Package dnsguard is egressguard's policy-enforcing DNS resolver.
//
// A Server listens on UDP and TCP (same address), identifies each client by
// its source IP through an inventory.Source, gets the plan of the client's
// workload class from a PlanSource (the policy engine) and decides every
// query name with plan.Decide before anything is forwarded:
//
//   - deny: NXDOMAIN with the SOA of a synthetic zone (the asked name's
//     parent, TTL and MINIMUM = negative_ttl) and an Extended DNS Error
//     (RFC 8914) 15 "Blocked" whose text names the rule and its reason; or,
//     per block_response, a sinkhole answer (0.0.0.0 / ::) or REFUSED, with
//     the same EDE;
//   - redirect: a CNAME from the asked name to the rule's sandbox host plus
//     the sandbox's own answer for the same type, resolved upstream, in one
//     response (the EDE text says when TLS clients will fail closed);
//   - allow: forwarded to the upstreams (in order, failing over on timeouts,
//     network errors, SERVFAIL and REFUSED; retried over TCP when truncated)
//     through a bounded, sharded cache that honours TTLs, negative TTLs
//     (RFC 2308) and serves stale answers for a bounded time (RFC 8767).
//
// What comes back is checked too: CNAME, DNAME and SVCB/HTTPS target names
// are decided by name, A/AAAA records and SVCB/HTTPS ipv4hint/ipv6hint by
// address, against the same plan. Only explicit rules count there (a
// default-deny class does not block every CDN name an allowed name leads
// to); a deny or redirect rule on a target or an address replaces the whole
// answer with the deny answer (CNAME cloaking and DNS rebinding into
// production stop here). Port-filtered rules apply to DNS only when they
// are DNS-held (their ports are name-blind, as SMTP's: see plan.DNSHeld);
// records production names own are stripped from allowed answers.
//
// Rules in report mode answer allow and are counted and recorded as
// would_deny. Every answer that is not a plain allow yields one
// decisionlog.Record (path egressguard/dns) and one "dns.decision" log line.
//
// Plans are immutable: Rebuild (called by the wiring on every policy reload
// and inventory change) drops the per-client memo, queries in flight finish
// with the plan they started with, and none is dropped.
//
// Over UDP, reader goroutines answer plain cache hits of allowed names
// straight from the packet bytes (no goroutine, no dns.Msg per query);
// everything else goes through ServeDNS on its own goroutine, after the
// checks miekg/dns's server makes. TCP is miekg/dns's server.
//
// The package never evaluates Rego and never reads the catalog.
package dnsguard
