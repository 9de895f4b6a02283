package secretscan_test

import (
	"fmt"

	secretscan "github.com/egressguard/egressguard/secrets-scan"
)

// A credential the value cannot place is judged by its block: here the
// PayPal mode marker makes the client secret a production credential, and
// the test-mode Stripe key is not a finding.
func ExampleDetector_Scan() {
	d, err := secretscan.NewDetector(secretscan.Production{
		Zones: []string{"*.prod.example.com"},
		Providers: []secretscan.ProviderEndpoint{
			{Provider: "paypal", Live: "api-m.paypal.com", Sandbox: "api-m.sandbox.paypal.com"},
		},
	})
	if err != nil {
		panic(err)
	}
	findings, _ := d.Scan("values.yaml", []byte(`
stripe:
  secretKey: sk_test_4eC39HqLyjWDarjtT1zdp7dc
paypal:
  mode: live
  clientSecret: EKj4Tn8Wq2Zx6Cv1Bm5Nr9Yp3Ls7Hd0Fg4Ja8Xk2Qe6Wt1Uo5Ri9Py3Mz7Nc0Lv
`))
	for _, f := range findings {
		fmt.Println(f.Line, f.Rule, f.Kind, f.Redacted)
	}
	// Output:
	// 6 paypal-client-secret secret EK****(63 chars)
}

// A GitHub token with nothing around it saying which environment it
// belongs to is reported as a credential of unknown environment; by
// default it does not fail the scan, FailOn{Unknown: true} makes it.
func ExampleFailOn() {
	d, err := secretscan.NewDetector(secretscan.Production{Zones: []string{"*.prod.example.com"}})
	if err != nil {
		panic(err)
	}
	findings, _ := d.Scan("ci.env", []byte("GITHUB_TOKEN=ghp_FLZDe1f8rESQedUStPKR0CsTy4Qwb8DwkNhF\n"))
	res := &secretscan.Result{Findings: findings}
	strict, err := secretscan.ParseFailOn([]string{"unknown"})
	if err != nil {
		panic(err)
	}
	fmt.Println(findings[0].Kind, findings[0].Environment, res.Failing(secretscan.FailOn{}), res.Failing(strict))
	// Output:
	// credential unknown 0 1
}
