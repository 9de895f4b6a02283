package secretscan

import (
	"regexp"
)

// envMode says how a rule knows the environment of what it matches.
type envMode uint8

const (
	// envInValue: the value itself says live or test (sk_live_ vs sk_test_).
	envInValue envMode = iota
	// envAlwaysLive: the provider has no test credentials; a finding unless
	// the block names that provider's sandbox.
	envAlwaysLive
	// envIdentity: an identity decoded from the value (AWS account, JWT
	// issuer, GCP project, account id) is looked up in the catalog.
	envIdentity
	// envContext: only the enclosing block can tell (see package doc).
	envContext
)

func (e envMode) String() string {
	return [...]string{"in-value", "always-live", "identity", "context"}[e]
}

// Example is a true or false positive that ships beside its rule. Path picks
// the decoder; the content is scanned against exampleProduction.
type Example struct {
	Path    string
	Content string
}

// Rule describes one detector: its pattern and anchors, how it knows the
// environment, its message and its own true and false positives, declared
// together in one file per provider (rules_<provider>.go).
type Rule struct {
	ID       string
	Title    string
	Provider string
	Severity Severity
	Kind     Kind
	Env      envMode
	// Format is the documented shape of the value, for humans.
	Format string
	// TruePositives must produce a production finding of this rule (of
	// its Kind); UnknownPositives a finding of kind credential whose
	// environment is unknown; FalsePositives no production finding of this
	// rule.
	TruePositives    []Example
	UnknownPositives []Example
	FalsePositives   []Example

	re     *regexp.Regexp // nil for structural rules
	prefix int            // bytes of public prefix kept by redaction

	// anchors are literal strings one of which occurs in every match; the
	// detector builds one Aho-Corasick automaton from all rules' anchors
	// when it is created. A rule without anchors is selected by its
	// setting's name (keys.go) or by structure (GCP JSON, fingerprints).
	anchors []string
	// testAnchors mark the provider's test or sandbox values (sk_test_):
	// such a value is no finding of any rule, and it is sandbox evidence for
	// the provider. testRe, when set, must match as well.
	testAnchors []string
	testRe      *regexp.Regexp
	// message says why a match is a finding (rules judged by evidence
	// elsewhere say it when judged).
	message string
	// detect finds the rule's matches in a value in which an anchor
	// occurred; nil runs re and judges each match by Env and Kind. It
	// reports whether the value was recognised (no generic rule then).
	detect func(st *fileState, it *item, kc keyClass, r *Rule) bool
	// byKey selects the rule by the setting's name, for values no anchor
	// recognised (rules are tried in Rules() order; the generic one last).
	byKey *keyRule
}

// keyRule selects a rule by the setting's name: the key names the rule's
// provider (its own name or an enclosing block's), or contains one of
// names; a rule of no provider takes any key.
type keyRule struct {
	// secretKey: the key must be credential-named (password, secret, token,
	// api key, ...) and the value credential-like.
	secretKey bool
	names     []string
	// value must match the whole value, or with find a part of it (which
	// is then the finding).
	value *regexp.Regexp
	find  bool
	// paired: judged with the identity of its pair prefix (an AWS secret
	// with its key id, a Twilio auth token with its account SID).
	paired bool
}

// Rule IDs.
const (
	RuleStripeSecret     = "stripe-live-secret-key"
	RuleStripeRestricted = "stripe-live-restricted-key"
	RuleStripePublish    = "stripe-live-publishable-key"
	RuleBraintree        = "braintree-production-access-token"
	RuleSquareSecret     = "square-production-application-secret"
	RuleSquareAppID      = "square-production-application-id"
	RuleSquareOAuth      = "square-production-oauth-token"
	RuleSquareAccess     = "square-access-token"
	RuleAdyenClientKey   = "adyen-live-client-key"
	RuleAdyenAPIKey      = "adyen-api-key"
	RulePayPalSecret     = "paypal-client-secret"
	RuleTwilioAuthToken  = "twilio-auth-token"
	RuleTwilioSID        = "twilio-production-account-sid"
	RuleSendGrid         = "sendgrid-api-key"
	RuleMailgun          = "mailgun-api-key"
	RulePostmark         = "postmark-server-token"
	RuleSlackToken       = "slack-token"
	RuleSlackWebhook     = "slack-webhook-url"
	RuleGitHub           = "github-token"
	RulePrivateKey       = "private-key"
	RuleAWSKeyID         = "aws-production-access-key-id"
	RuleAWSSecret        = "aws-secret-access-key"
	RuleGCPServiceAcct   = "gcp-production-service-account-key"
	RuleJWT              = "production-jwt"
	RuleDatabaseURL      = "production-database-url"
	RuleEndpoint         = "production-endpoint"
	RuleFingerprint      = "production-secret-fingerprint"
	RuleGeneric          = "production-context-credential"
)

func mustRe(s string) *regexp.Regexp { return regexp.MustCompile(s) }

// Rules returns the rule table (a fresh copy: callers may not share it).
func Rules() []*Rule {
	var rs []*Rule
	for _, f := range []func() []*Rule{stripeRules, braintreeRules, squareRules, adyenRules, paypalRules, twilioRules, sendgridRules, mailgunRules, postmarkRules, slackRules, githubRules, pemRules, awsRules, gcpRules, jwtRules, databaseRules, endpointRules, fingerprintRules, genericRules} {
		rs = append(rs, f()...)
	}
	return rs
}

// EnvName says how the rule knows a value is production: "in-value",
// "always-live", "identity" or "context".
func (r *Rule) EnvName() string { return r.Env.String() }
