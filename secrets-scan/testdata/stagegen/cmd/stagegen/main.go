// Command stagegen writes the labeled secrets-scan tree (see package
// stagegen): stagegen -out DIR -size 200MB -seed 1 [-labels FILE] [-catalog FILE].
package main

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/egressguard/egressguard/secrets-scan/testdata/stagegen"
)

func main() {
	out := flag.String("out", "", "directory to write")
	size := flag.String("size", "10MB", "approximate total size (KB, MB, GB suffixes)")
	seed := flag.Uint64("seed", 1, "random seed")
	labels := flag.String("labels", "", "write the labels (JSON) here")
	catalog := flag.String("catalog", "", "write the production catalog (YAML, egressguard schema) here")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "stagegen: -out is required")
		os.Exit(2)
	}
	n, err := parseSize(*size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stagegen:", err)
		os.Exit(2)
	}
	c := stagegen.NewCatalog(*seed)
	m, err := stagegen.Generate(*out, c, stagegen.Options{Seed: *seed, Bytes: n})
	if err != nil {
		fmt.Fprintln(os.Stderr, "stagegen:", err)
		os.Exit(1)
	}
	if *labels != "" {
		b, _ := json.MarshalIndent(m, "", " ")
		if err := os.WriteFile(*labels, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "stagegen:", err)
			os.Exit(1)
		}
	}
	if *catalog != "" {
		if err := os.WriteFile(*catalog, []byte(catalogYAML(c)), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "stagegen:", err)
			os.Exit(1)
		}
	}
	fmt.Printf("stagegen: %d files, %d bytes, %d expected findings\n", m.Files, m.Bytes, len(m.Labels))
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	u := strings.ToUpper(s)
	for suf, m := range map[string]int64{"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30} {
		if strings.HasSuffix(u, suf) {
			mult, u = m, strings.TrimSuffix(u, suf)
		}
	}
	n, err := strconv.ParseInt(u, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

func q(s string) string { b, _ := json.Marshal(s); return string(b) }

func list(xs []string) string {
	var qs []string
	for _, x := range xs {
		qs = append(qs, q(x))
	}
	return "[" + strings.Join(qs, ", ") + "]"
}

// catalogYAML renders the corpus's production in the catalog schema.
func catalogYAML(c *stagegen.Catalog) string {
	var b strings.Builder
	fmt.Fprintf(&b, "zones: %s\ncidrs: %s\nproviders:\n", list(c.Zones), list(c.CIDRs))
	byName := map[string][]stagegen.Provider{}
	var order []string
	for _, p := range c.Providers {
		if _, ok := byName[p.Name]; !ok {
			order = append(order, p.Name)
		}
		byName[p.Name] = append(byName[p.Name], p)
	}
	for _, n := range order {
		fmt.Fprintf(&b, "  - name: %s\n    category: payment\n    endpoints:\n", n)
		for _, p := range byName[n] {
			fmt.Fprintf(&b, "      - live: %s\n", q(p.Live))
			if p.Sandbox != "" {
				fmt.Fprintf(&b, "        sandbox: {host: %s, port: 443, tls: true}\n", p.Sandbox)
			}
		}
	}
	fmt.Fprintf(&b, "  - name: twilio\n    category: sms\n    accounts: %s\n    endpoints:\n      - live: \"api.twilio.com\"\n", list(c.TwilioSIDs))
	fmt.Fprintf(&b, "cloud:\n  aws_accounts: %s\n  gcp_projects: %s\n", list(c.AWSAccounts), list(c.GCPProjects))
	fmt.Fprintf(&b, "jwt:\n  issuers: %s\n", list(c.JWTIssuers))
	fmt.Fprintf(&b, "fingerprints:\n  - algorithm: sha256\n    salt: %s\n    source: stagegen\n    values: %s\n",
		q(base64.StdEncoding.EncodeToString(c.FingerprintSalt)), list(c.Fingerprints()))
	return b.String()
}
