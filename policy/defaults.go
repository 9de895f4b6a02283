package policy

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
)

// The default catalog and scenarios ship inside the binary; operator files
// are merged after the catalog.
//
//go:embed defaults/catalog.yaml defaults/scenarios.yaml
var defaultsFS embed.FS

// The default Rego policy and its unit tests (files ending in _test.rego are
// loaded only by RunTests).
//
//go:embed rego/*.rego
var regoFS embed.FS

// DefaultCatalogName is the name errors use for the embedded catalog.
const DefaultCatalogName = "embedded:defaults/catalog.yaml"

// DefaultScenariosName is the name reports use for the embedded scenarios.
const DefaultScenariosName = "embedded:defaults/scenarios.yaml"

// DefaultCatalog returns the embedded default catalog file.
func DefaultCatalog() CatalogFile {
	b, err := defaultsFS.ReadFile("defaults/catalog.yaml")
	if err != nil {
		panic("policy: embedded catalog missing: " + err.Error()) // programmer error: embed is checked at build time
	}
	return CatalogFile{Name: DefaultCatalogName, Data: b}
}

func defaultScenarios() []byte {
	b, err := defaultsFS.ReadFile("defaults/scenarios.yaml")
	if err != nil {
		panic("policy: embedded scenarios missing: " + err.Error())
	}
	return b
}

// regoFile is one Rego source.
type regoFile struct {
	Name string
	Data []byte
}

// defaultRego returns the embedded policy modules (tests if tests is true).
func defaultRego(tests bool) []regoFile {
	ents, err := fs.ReadDir(regoFS, "rego")
	if err != nil {
		panic("policy: embedded rego missing: " + err.Error())
	}
	var out []regoFile
	for _, e := range ents {
		n := e.Name()
		if strings.HasSuffix(n, "_test.rego") != tests {
			continue
		}
		b, err := regoFS.ReadFile("rego/" + n)
		if err != nil {
			panic("policy: embedded rego: " + err.Error())
		}
		out = append(out, regoFile{Name: "embedded:rego/" + n, Data: b})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
