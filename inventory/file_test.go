package inventory

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadFileValid(t *testing.T) {
	s, err := LoadFile("testdata/valid/basic.yaml")
	require.NoError(t, err)
	require.Equal(t, 3, s.Len())

	ws := s.Workloads()
	assert.Equal(t, &Workload{
		Name:        "checkout",
		Namespace:   "payments",
		Environment: "staging",
		Labels:      map[string]string{"app": "checkout", "team": "pay"},
		IPs: []netip.Prefix{
			netip.MustParsePrefix("10.1.2.3/32"),
			netip.MustParsePrefix("10.1.3.0/24"),
			netip.MustParsePrefix("fd00::1/128"),
		},
		NodeIDs: []string{"sidecar~10.1.2.3~checkout-7d9.payments~payments.svc.cluster.local"},
		Sidecar: true,
	}, ws[0])
	assert.False(t, ws[1].Sidecar)
	// An IPv4-mapped prefix in the file is stored as IPv4.
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("192.168.7.0/24")}, ws[2].IPs)
	assert.Equal(t, "staging", s.Default().Environment)
	assert.Equal(t, UnknownName, s.Default().Name)
}

func TestParseDefaultEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"omitted means staging", "workloads: []\n", "staging"},
		{"null means staging", "default_environment: ~\nworkloads: []\n", "staging"},
		{"configured", "default_environment: dev\nworkloads: []\n", "dev"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse("inv.yaml", []byte(tc.doc))
			require.NoError(t, err)
			assert.Equal(t, tc.want, s.Default().Environment)
			assert.Equal(t, tc.want, s.DefaultEnvironment())
			assert.Equal(t, 0, s.Len())
		})
	}
}

func TestLoadFileInvalid(t *testing.T) {
	for _, tc := range []struct {
		file string
		is   []error
		want []string // substrings of the error message
	}{
		{
			file: "ip-in-two-workloads.yaml",
			is:   []error{ErrDuplicateIP},
			want: []string{
				"testdata/invalid/ip-in-two-workloads.yaml:11: workloads[1].ips[1]",
				"10.1.2.3/32 is in workload shop/cart and in workload payments/checkout",
				"ip-in-two-workloads.yaml:5: workloads[0].ips[0]",
			},
		},
		{
			file: "unknown-field.yaml",
			is:   []error{ErrSyntax},
			want: []string{"unknown-field.yaml: ", "line 4: field env not found in workload"},
		},
		{
			file: "bad-prefix.yaml",
			is:   []error{ErrBadIP},
			want: []string{
				"bad-prefix.yaml:4: workloads[0].ips[0]: bad IP address or prefix",
				"10.1.2.0/33",
				"workloads[0].ips[1]", "10.1.3.5/24 has host bits set (did you mean 10.1.3.0/24 or 10.1.3.5/32?)",
				"workloads[0].ips[2]", "not-an-ip",
			},
		},
		{
			file: "missing-fields.yaml",
			is:   []error{ErrNoName, ErrNoEnvironment, ErrDuplicateNode},
			want: []string{
				"missing-fields.yaml:2: workloads[0].name: name is required",
				"missing-fields.yaml:2: workloads[0].environment: environment is required",
				"missing-fields.yaml:6: workloads[1].node_ids[1]",
				`"a" is in workload ok and in workload ok`,
			},
		},
	} {
		t.Run(tc.file, func(t *testing.T) {
			s, err := LoadFile(filepath.Join("testdata/invalid", tc.file))
			require.Error(t, err)
			assert.Nil(t, s)
			for _, target := range tc.is {
				assert.ErrorIs(t, err, target)
			}
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Contains(t, err.Error(), "inventory: ")
		})
	}
}

func TestParseBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		is   error
		want string
	}{
		{"empty document", "", ErrNoDocument, "inv.yaml: empty inventory document"},
		{"comment only", "# nothing\n", ErrNoDocument, "empty inventory document"},
		{"two documents", "workloads: []\n---\nworkloads: []\n", ErrExtraDocument, "inv.yaml:2: more than one YAML document"},
		{"not a mapping", "- a\n", ErrSyntax, "inv.yaml: malformed inventory file: line 1: cannot unmarshal !!seq into the inventory"},
		{"unknown top-level field", "workload: []\n", ErrSyntax, "line 1: field workload not found at top level"},
		{"duplicate key", "workloads:\n  - name: a\n    name: b\n    environment: qa\n", ErrSyntax, "line 3: mapping key \"name\" already defined at line 2"},
		{"ips not a list", "workloads:\n  - name: a\n    environment: qa\n    ips: 10.0.0.1\n", ErrSyntax, "line 4"},
		{"ip entry a mapping", "workloads:\n  - name: a\n    environment: qa\n    ips: [{a: b}]\n", ErrSyntax, "line 4: want a string, got a mapping"},
		{"bad yaml", "workloads: [\n", ErrSyntax, "inv.yaml: malformed inventory file"},
		{"zone", "workloads:\n  - name: a\n    environment: qa\n    ips: ['fe80::1%eth0']\n", ErrBadIP, "zones are not allowed"},
		{"short mapped prefix", "workloads:\n  - name: a\n    environment: qa\n    ips: ['::ffff:0:0/95']\n", ErrBadIP, "must be /96 or longer"},
		{"empty ip", "workloads:\n  - name: a\n    environment: qa\n    ips: ['']\n", ErrBadIP, "empty address"},
		{"same prefix twice in one workload", "workloads:\n  - name: a\n    environment: qa\n    ips: [10.0.0.0/8, 10.0.0.0/8]\n", ErrDuplicateIP, "inv.yaml:4: workloads[0].ips[1]: IP prefix claimed by two workloads: 10.0.0.0/8 is listed twice in workload a"},
		{"mapped and plain are the same", "workloads:\n  - {name: a, environment: qa, ips: [10.0.0.1]}\n  - {name: b, environment: qa, ips: ['::ffff:10.0.0.1']}\n", ErrDuplicateIP, "10.0.0.1/32 is in workload b and in workload a"},
		{"duplicate workload", "workloads:\n  - {name: a, namespace: n, environment: qa}\n  - {name: a, namespace: n, environment: qa}\n", ErrDuplicateName, "inv.yaml:3: workloads[1]: workload defined twice: n/a is also inv.yaml:2: workloads[0]"},
		{"empty node id", "workloads:\n  - {name: a, environment: qa, node_ids: ['']}\n", ErrEmptyNodeID, "workloads[0].node_ids[0]"},
		{"control character", "workloads:\n  - {name: \"a\\x01\", environment: qa}\n", ErrBadString, "workloads[0].name"},
		{"C1 control", "workloads:\n  - {name: a, environment: \"qa\\x85\"}\n", ErrBadString, "workloads[0].environment"},
		{"invalid utf-8", "workloads:\n  - {name: a, environment: \xff}\n", ErrSyntax, "inv.yaml: malformed inventory file"},
		{"empty label key", "workloads:\n  - {name: a, environment: qa, labels: {'': x}}\n", ErrEmptyLabelKey, "workloads[0].labels"},
		{"binary", "workloads:\n  - {name: !!binary aGVsbG8=, environment: qa}\n", ErrSyntax, "binary values are not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse("inv.yaml", []byte(tc.doc))
			require.Error(t, err)
			assert.Nil(t, s)
			assert.ErrorIs(t, err, tc.is)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// All problems are reported at once, bad addresses and later validation
// errors alike.
func TestParseReportsEverything(t *testing.T) {
	doc := `workloads:
  - name: a
    environment: qa
    ips: [bogus, 10.0.0.1, 10.0.0.2]
  - name: b
    ips: [10.0.0.2]
`
	_, err := Parse("inv.yaml", []byte(doc))
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrBadIP)
	assert.ErrorIs(t, err, ErrNoEnvironment)
	assert.ErrorIs(t, err, ErrDuplicateIP)
	// The duplicate names the right entry of a (index 2 in the file,
	// although the bad entry before it was dropped).
	assert.Contains(t, err.Error(), "inv.yaml:6: workloads[1].ips[0]: IP prefix claimed by two workloads: 10.0.0.2/32 is in workload b and in workload a (inv.yaml:4: workloads[0].ips[2])")
}

func TestMarshalRoundTrip(t *testing.T) {
	files, err := filepath.Glob("testdata/valid/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			s, err := LoadFile(f)
			require.NoError(t, err)
			b, err := s.Marshal()
			require.NoError(t, err)
			again, err := Parse("marshalled", b)
			require.NoError(t, err, "%s", b)
			assertSameSnapshot(t, s, again)
			b2, err := again.Marshal()
			require.NoError(t, err)
			assert.Equal(t, string(b), string(b2))
			assert.Equal(t, s.Fingerprint(), again.Fingerprint())
		})
	}
}

var update = flag.Bool("update", false, "rewrite testdata/basic.marshal.golden.yaml from the current Marshal")

func TestMarshalGolden(t *testing.T) {
	s, err := LoadFile("testdata/valid/basic.yaml")
	require.NoError(t, err)
	b, err := s.Marshal()
	require.NoError(t, err)
	const golden = "testdata/basic.marshal.golden.yaml"
	if *update {
		require.NoError(t, os.WriteFile(golden, b, 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run go test ./inventory -run TestMarshalGolden -update")
	assert.Equal(t, string(want), string(b))
}

func assertSameSnapshot(t *testing.T, want, got *Snapshot) {
	t.Helper()
	assert.Equal(t, want.Workloads(), got.Workloads())
	assert.Equal(t, want.Default(), got.Default())
}
