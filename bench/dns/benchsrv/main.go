// Command benchsrv is the DNS benchmark's helper, used by bench/dns.sh:
//
//	benchsrv auth -listen 127.0.0.1:5390
//	    an authoritative server for bench.example.: every name under it
//	    has an A record (the address derived from the name), TTL 3600;
//	    names elsewhere are NXDOMAIN.
//	benchsrv dnsguard -listen 127.0.0.1:5391 -upstream 127.0.0.1:5390 [-rules 2000]
//	    dnsguard in front of that upstream, enforcing a plan of the size a
//	    real catalog yields (production zones, providers, CIDRs) for every
//	    client (all clients are unknown, hence staging).
//
// It is not part of egressguard's CLI: the serve command wires dnsguard
// from the policy engine; this wires it from a generated plan so the
// benchmark measures the resolver and the matcher alone.
package main

import (
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/egressguard/egressguard/dnsguard"
	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchsrv auth|dnsguard [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "auth":
		err = runAuth(os.Args[2:])
	case "dnsguard":
		err = runDNSGuard(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchsrv:", err)
		os.Exit(1)
	}
}

func waitSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	<-ch
}

const benchZone = "bench.example."

func runAuth(args []string) error {
	fs := flag.NewFlagSet("auth", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:5390", "address (UDP and TCP)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: benchZone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 3600},
		Ns: "ns." + benchZone, Mbox: "hostmaster." + benchZone, Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 300}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		q := r.Question[0]
		name := strings.ToLower(q.Name)
		switch {
		case !dns.IsSubDomain(benchZone, name):
			m.Rcode = dns.RcodeRefused
		case q.Qtype == dns.TypeA && name != benchZone:
			h := fnv.New32a()
			h.Write([]byte(name))
			v := h.Sum32()
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600},
				A: net.IPv4(198, 18, byte(v>>8), byte(v))}}
		default:
			m.Ns = []dns.RR{soa}
		}
		if opt := r.IsEdns0(); opt != nil {
			m.SetEdns0(opt.UDPSize(), false)
		}
		_ = w.WriteMsg(m)
	})
	errs := make(chan error, 2)
	for _, network := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: *listen, Net: network, Handler: handler}
		go func() { errs <- srv.ListenAndServe() }()
	}
	go func() { waitSignal(); errs <- nil }()
	return <-errs
}

// benchSpec is a catalog-sized plan: production zones, provider hosts
// (some redirected), production CIDRs, a report-mode rule.
func benchSpec(n int) plan.Spec {
	spec := plan.Spec{Default: plan.ActionAllow}
	for i := range n {
		r := plan.Rule{ID: fmt.Sprintf("rule-%d", i), Action: plan.ActionDeny, Reason: "production"}
		switch i % 4 {
		case 0:
			r.Hosts = []string{fmt.Sprintf("*.zone%d.prod.example", i)}
		case 1:
			r.Hosts = []string{fmt.Sprintf("api.provider%d.example", i)}
		case 2:
			r.Hosts = []string{fmt.Sprintf("live.provider%d.example", i)}
			r.Action = plan.ActionRedirect
			r.Redirect = &plan.Redirect{Host: fmt.Sprintf("sandbox.provider%d.example", i), Port: 443, TLS: true}
		case 3:
			r.CIDRs = []string{fmt.Sprintf("10.%d.%d.0/24", i/256%256, i%256)}
		}
		spec.Rules = append(spec.Rules, r)
	}
	spec.Rules = append(spec.Rules, plan.Rule{ID: "report", Hosts: []string{"*.report.example"}, Action: plan.ActionDeny, Mode: plan.ModeReport})
	return spec
}

type fixedPlan struct{ p *plan.Plan }

func (f fixedPlan) PlanFor(*inventory.Workload) (*plan.Plan, error) { return f.p, nil }

func runDNSGuard(args []string) error {
	fs := flag.NewFlagSet("dnsguard", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:5391", "address (UDP and TCP)")
	upstream := fs.String("upstream", "127.0.0.1:5390", "upstream resolver")
	rules := fs.Int("rules", 2000, "rules in the generated plan")
	cacheSize := fs.Int("cache-size", dnsguard.Defaults().CacheSize, "cache entries")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	p, err := plan.Compile(benchSpec(*rules))
	if err != nil {
		return err
	}
	cfg := dnsguard.Defaults()
	cfg.Listen = *listen
	cfg.Upstreams = []string{*upstream}
	cfg.CacheSize = *cacheSize
	log, err := zap.NewProduction()
	if err != nil {
		return err
	}
	log = log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))
	s, err := dnsguard.New(cfg, fixedPlan{p}, inventory.NewStatic(inventory.Empty("staging")), nil, log, nil)
	if err != nil {
		return err
	}
	if err := s.Start(context.Background()); err != nil {
		return err
	}
	waitSignal()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.Shutdown(ctx)
}
