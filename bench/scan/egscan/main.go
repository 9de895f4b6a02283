// Command egscan runs the secretscan library exactly as `egressguard scan`
// does (same Detector, Scanner and JSON report), with the production
// description of the labeled corpus (stagegen.NewCatalog(seed)), so
// bench/scan.sh can measure it on the generated tree without a catalog
// file. It prints files, bytes and findings to standard error.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"

	"go.uber.org/zap"

	secretscan "github.com/egressguard/egressguard/secrets-scan"
	"github.com/egressguard/egressguard/secrets-scan/testdata/stagegen"
)

func main() {
	seed := flag.Uint64("seed", 1, "corpus seed whose catalog describes production")
	out := flag.String("o", "", "JSON report path (default: discard)")
	workers := flag.Int("workers", 0, "parallel files (0: GOMAXPROCS)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	c := stagegen.NewCatalog(*seed)
	p := secretscan.Production{
		Zones: c.Zones, CIDRs: c.CIDRs, AWSAccounts: c.AWSAccounts, GCPProjects: c.GCPProjects,
		JWTIssuers:   c.JWTIssuers,
		AccountIDs:   map[string][]string{"twilio": c.TwilioSIDs},
		Fingerprints: []secretscan.FingerprintSet{{Algorithm: "sha256", Salt: c.FingerprintSalt, Values: c.Fingerprints(), Source: "corpus"}},
	}
	for _, pr := range c.Providers {
		p.Providers = append(p.Providers, secretscan.ProviderEndpoint{Provider: pr.Name, Live: pr.Live, Sandbox: pr.Sandbox})
	}
	d, err := secretscan.NewDetector(p)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	res, err := secretscan.NewScanner(d, secretscan.Options{Workers: *workers}, zap.NewNop()).ScanPaths(context.Background(), flag.Args(), os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var w io.Writer = io.Discard
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		defer f.Close()
		w = f
	}
	if err := secretscan.WriteJSON(w, res); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer fmt.Fprintf(os.Stderr, "egscan: %d files, %d bytes, %d findings, %d notices\n", res.Files, res.Bytes, len(res.Findings), len(res.Notices))
}
