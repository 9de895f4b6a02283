package policy

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// CatalogFile is one catalog source: a name for errors and its bytes.
type CatalogFile struct {
	Name string
	Data []byte
}

// ExpiredException is an exception dropped from the merged catalog because
// its day is over. Operators see these in Status, logs and a metric.
type ExpiredException struct {
	ID      string `json:"id"`
	File    string `json:"file"`
	Expires string `json:"expires"`
	Owner   string `json:"owner"`
	Ticket  string `json:"ticket"`
}

// DefaultEnvironments applies when no catalog file sets environments.
func DefaultEnvironments() *Environments {
	return &Environments{
		Production:    []string{"production", "prod"},
		NonProduction: []string{"staging", "stage", "qa", "test", "dev", "development", "sandbox"},
	}
}

// LoadCatalogFiles reads operator catalog files from disk.
func LoadCatalogFiles(paths ...string) ([]CatalogFile, error) {
	out := make([]CatalogFile, 0, len(paths))
	var errs []error
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy: catalog: %w", err))
			continue
		}
		out = append(out, CatalogFile{Name: p, Data: b})
	}
	return out, errors.Join(errs...)
}

// BuildCatalog parses every file (all errors at once), merges them in order
// and drops exceptions expired at now.
//
// Merge rules, in file order (the embedded default first, then operator
// files): a provider with the name of an earlier one replaces it in place
// (later files win) and `disabled: true` removes it; zones, cidrs, cloud
// accounts, JWT identities, fingerprints and exceptions append; environments and mail_sink
// replace when set. Exception IDs must be unique across files.
func BuildCatalog(files []CatalogFile, now time.Time) (*Catalog, []ExpiredException, error) {
	var errs []error
	parsed := make([]*Catalog, len(files))
	for i, f := range files {
		c, err := ParseCatalog(f.Name, f.Data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		parsed[i] = c
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	m := &Catalog{}
	provIdx := map[string]int{}
	excFile := map[string]string{}
	optOutFile := map[string]string{}
	var expired []ExpiredException
	for i, c := range parsed {
		file := files[i].Name
		if c.Environments != nil {
			m.Environments = c.Environments
		}
		if c.MailSink != nil {
			m.MailSink = c.MailSink
		}
		if c.UnnamedTLS != "" {
			m.UnnamedTLS = c.UnnamedTLS
		}
		if c.RequestRulesFallback != "" {
			m.RequestRulesFallback = c.RequestRulesFallback
		}
		m.Zones = appendUnique(m.Zones, c.Zones...)
		m.CIDRs = appendUnique(m.CIDRs, c.CIDRs...)
		m.NAT64 = appendUnique(m.NAT64, c.NAT64...)
		for _, p := range c.Providers {
			if j, ok := provIdx[p.Name]; ok {
				m.Providers[j] = p // replaced in place; disabled ones are dropped below
				continue
			}
			provIdx[p.Name] = len(m.Providers)
			m.Providers = append(m.Providers, p)
		}
		if c.Cloud != nil {
			if m.Cloud == nil {
				m.Cloud = &Cloud{}
			}
			m.Cloud.AWSAccounts = append(m.Cloud.AWSAccounts, c.Cloud.AWSAccounts...)
			m.Cloud.GCPProjects = append(m.Cloud.GCPProjects, c.Cloud.GCPProjects...)
			m.Cloud.AzureSubscriptions = append(m.Cloud.AzureSubscriptions, c.Cloud.AzureSubscriptions...)
		}
		if c.JWT != nil {
			if m.JWT == nil {
				m.JWT = &JWTIdentities{}
			}
			m.JWT.Issuers = appendUnique(m.JWT.Issuers, c.JWT.Issuers...)
			m.JWT.Audiences = appendUnique(m.JWT.Audiences, c.JWT.Audiences...)
		}
		m.Fingerprints = append(m.Fingerprints, c.Fingerprints...)
		for _, x := range c.Exceptions {
			if prev, dup := excFile[x.ID]; dup {
				errs = append(errs, &FieldError{File: file, Path: "exceptions", Msg: fmt.Sprintf("exception id %q is already defined in %s", x.ID, prev)})
				continue
			}
			excFile[x.ID] = file
			if x.Expires.ExpiredAt(now) {
				expired = append(expired, ExpiredException{ID: x.ID, File: file, Expires: x.Expires.Raw, Owner: x.Owner, Ticket: x.Ticket})
				continue
			}
			m.Exceptions = append(m.Exceptions, x)
		}
		errs = append(errs, m.mergeHostNetworkOptOuts(c, file, optOutFile)...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	kept := m.Providers[:0]
	for _, p := range m.Providers {
		if !p.Disabled {
			kept = append(kept, p)
		}
	}
	m.Providers = kept
	if m.Environments == nil {
		m.Environments = DefaultEnvironments()
	}
	return m, expired, nil
}

// appendUnique appends the values not already present (the rule IDs derived
// from zones and CIDRs must be unique).
func appendUnique(dst []string, vals ...string) []string {
	seen := make(map[string]bool, len(dst)+len(vals))
	for _, v := range dst {
		seen[v] = true
	}
	for _, v := range vals {
		if !seen[v] {
			seen[v] = true
			dst = append(dst, v)
		}
	}
	return dst
}
