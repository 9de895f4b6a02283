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

// Rule describes one detector. The detection code is in detect.go; the
// table below is the documentation and the test oracle of each rule.
type Rule struct {
	ID       string
	Title    string
	Provider string
	Severity Severity
	Kind     Kind
	Env      envMode
	// Format is the documented shape of the value, for humans.
	Format string
	// TruePositives must produce a finding of this rule; FalsePositives
	// must not.
	TruePositives  []Example
	FalsePositives []Example

	re     *regexp.Regexp // nil for structural rules
	prefix int            // bytes of public prefix kept by redaction
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
	return []*Rule{
		{
			ID: RuleStripeSecret, Title: "Stripe live secret key", Provider: "stripe",
			Severity: SeverityCritical, Kind: KindSecret, Env: envInValue, prefix: 8,
			Format: "sk_live_ + 24..247 [0-9A-Za-z]; test keys are sk_test_",
			re:     mustRe(`\bsk_live_[0-9A-Za-z]{24,247}`),
			TruePositives: []Example{
				{"app.env", "STRIPE_SECRET_KEY=sk_live_UbbYrEqmSM9wCZ7Uw9xfogoE\n"},
				{"values.yaml", "stripe:\n  apiKey: \"sk_live_51Hx9QmKZ2vTYc8dNa0bLw3pE7rUf6gJ\"\n"},
			},
			FalsePositives: []Example{
				{"app.env", "STRIPE_SECRET_KEY=sk_test_mvnEN5N1aE6PwZPf1Qh6yYTW\n"},
				{"app.env", "STRIPE_SECRET_KEY=sk_live_xxxxxxxxxxxxxxxxxxxxxxxx\n"},
				{"app.env", "STRIPE_SECRET_KEY=${STRIPE_SECRET_KEY}\n"},
			},
		},
		{
			ID: RuleStripeRestricted, Title: "Stripe live restricted key", Provider: "stripe",
			Severity: SeverityHigh, Kind: KindSecret, Env: envInValue, prefix: 8,
			Format: "rk_live_ + 24..247 [0-9A-Za-z]; test keys are rk_test_",
			re:     mustRe(`\brk_live_[0-9A-Za-z]{24,247}`),
			TruePositives: []Example{
				{"config.json", `{"stripe": {"restricted": "rk_live_9Tq2LmNc7XvB4rE1wZy6KpAs3Dh8"}}`},
			},
			FalsePositives: []Example{
				{"config.json", `{"stripe": {"restricted": "rk_test_9Tq2LmNc7XvB4rE1wZy6KpAs3Dh8"}}`},
			},
		},
		{
			ID: RuleStripePublish, Title: "Stripe live publishable key", Provider: "stripe",
			Severity: SeverityLow, Kind: KindSecret, Env: envInValue, prefix: 8,
			Format: "pk_live_ + 24..247 [0-9A-Za-z] (public, but proves a live integration)",
			re:     mustRe(`\bpk_live_[0-9A-Za-z]{24,247}`),
			TruePositives: []Example{
				{"app.properties", "stripe.publishable=pk_live_Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7c\n"},
			},
			FalsePositives: []Example{
				{"app.properties", "stripe.publishable=pk_test_Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7c\n"},
			},
		},
		{
			ID: RuleBraintree, Title: "Braintree/PayPal production access token", Provider: "braintree",
			Severity: SeverityCritical, Kind: KindSecret, Env: envInValue, prefix: 24,
			Format: "access_token$production$<16 [0-9a-z]>$<32 hex>; sandbox tokens say $sandbox$",
			re:     mustRe(`access_token\$production\$[0-9a-z]{16}\$[0-9a-f]{32}`),
			TruePositives: []Example{
				{"app.env", "BRAINTREE_TOKEN=access_token$production$x7k2m9q4w1z8p3r6$3f9a1c7e5b2d8f4a6c0e9b1d3f5a7c92\n"},
			},
			FalsePositives: []Example{
				{"app.env", "BRAINTREE_TOKEN=access_token$sandbox$x7k2m9q4w1z8p3r6$3f9a1c7e5b2d8f4a6c0e9b1d3f5a7c92\n"},
			},
		},
		{
			ID: RuleSquareSecret, Title: "Square production application secret", Provider: "square",
			Severity: SeverityCritical, Kind: KindSecret, Env: envInValue, prefix: 7,
			Format: "sq0csp- + 43 [0-9A-Za-z_-]; sandbox secrets are sandbox-sq0csb-",
			re:     mustRe(`\bsq0csp-[0-9A-Za-z_-]{43}`),
			TruePositives: []Example{
				{"square.yaml", "square:\n  application_secret: sq0csp-dnXsiVpzz63FfkCzJr4i0B3JrTAwR4y9ojfljoQoaF1\n"},
			},
			FalsePositives: []Example{
				{"square.yaml", "square:\n  application_secret: sandbox-sq0csb-Xb7_Ka2mQ9vLc4Ty8pW1zN6rE3uJ5hG0dF2sA7kB9wM\n"},
			},
		},
		{
			ID: RuleSquareAppID, Title: "Square production application id", Provider: "square",
			Severity: SeverityLow, Kind: KindSecret, Env: envInValue, prefix: 7,
			Format: "sq0idp- + 22 [0-9A-Za-z_-]; sandbox ids are sandbox-sq0idb-",
			re:     mustRe(`\bsq0idp-[0-9A-Za-z_-]{22}`),
			TruePositives: []Example{
				{"square.yaml", "square:\n  application_id: sq0idp-LlqsajAIxNKu8iS2G8NPRV\n"},
			},
			FalsePositives: []Example{
				{"square.yaml", "square:\n  application_id: sandbox-sq0idb-Wq3K8vN2cT7yL5pR9mB4xZ\n"},
			},
		},
		{
			ID: RuleSquareOAuth, Title: "Square production OAuth access token (legacy format)", Provider: "square",
			Severity: SeverityCritical, Kind: KindSecret, Env: envInValue, prefix: 7,
			Format: "sq0atp- + 22 [0-9A-Za-z_-]; sandbox tokens are sandbox-sq0atb-",
			re:     mustRe(`\bsq0atp-[0-9A-Za-z_-]{22}`),
			TruePositives: []Example{
				{"app.env", "SQUARE_TOKEN=sq0atp-dD53X83RZJzzzzgEOzdmen\n"},
			},
			FalsePositives: []Example{
				{"app.env", "SQUARE_TOKEN=sandbox-sq0atb-9fK2xL7qW4mC1vB8nZ3rT6\n"},
			},
		},
		{
			ID: RuleSquareAccess, Title: "Square access token in a production block", Provider: "square",
			Severity: SeverityCritical, Kind: KindSecret, Env: envContext, prefix: 4,
			Format: "EAAA + 60 [0-9A-Za-z_-]; production and sandbox tokens look alike: SQUARE_ENVIRONMENT or the endpoint decides",
			re:     mustRe(`\bEAAA[0-9A-Za-z_-]{60}`),
			TruePositives: []Example{
				{"app.env", "SQUARE_ENVIRONMENT=production\nSQUARE_ACCESS_TOKEN=EAAAu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8dKLzdocJ2isAjIhKtJ0RlgLKO\n"},
			},
			FalsePositives: []Example{
				{"app.env", "SQUARE_ENVIRONMENT=sandbox\nSQUARE_ACCESS_TOKEN=EAAAu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8dKLzdocJ2isAjIhKtJ0RlgLKO\n"},
				{"app.env", "SQUARE_ACCESS_TOKEN=EAAAu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8dKLzdocJ2isAjIhKtJ0RlgLKO\n"},
			},
		},
		{
			ID: RuleAdyenClientKey, Title: "Adyen live client key", Provider: "adyen",
			Severity: SeverityMedium, Kind: KindSecret, Env: envInValue, prefix: 5,
			Format: "live_ + 32 [A-Z0-9]; test client keys are test_",
			re:     mustRe(`\blive_[A-Z0-9]{32}`),
			TruePositives: []Example{
				{"checkout.yaml", "adyen:\n  clientKey: live_2KHVDGAJ8GXBENYJQWX4HH5344TFJGVQ\n"},
			},
			FalsePositives: []Example{
				{"checkout.yaml", "adyen:\n  clientKey: test_4K7BN7XJ8B7TFQ7XKWO886VOMPZOM75W\n"},
			},
		},
		{
			ID: RuleAdyenAPIKey, Title: "Adyen API key in a production block", Provider: "adyen",
			Severity: SeverityCritical, Kind: KindSecret, Env: envContext, prefix: 3,
			Format: "AQE + base64 characters (80..250); live and test keys look alike: the -live endpoint decides",
			re:     mustRe(`\bAQE[0-9A-Za-z+/=_.-]{77,247}`),
			TruePositives: []Example{
				{"checkout.yaml", "adyen:\n  endpoint: https://1797a841fbb37ca7-AcmeShop-checkout-live.adyenpayments.com/checkout\n  apiKey: AQEyhmfxK4vNbhFGw0m/n3Q5qf3VaY9UCJ1+XWZe9W27jmlZiv4PD4jhfNMofnLr2K5i8/0QwV1bDb7kfNy1WIxIIkxgBw==-lUKXT9IQ5GZ6d6RH4nnuOG4Bu6F5s6fC3VLsCfdtGKk=-Dt;5Ul:k7JU?v7[9\n"},
			},
			FalsePositives: []Example{
				{"checkout.yaml", "adyen:\n  endpoint: https://checkout-test.adyen.com/v71\n  apiKey: AQEyhmfxK4vNbhFGw0m/n3Q5qf3VaY9UCJ1+XWZe9W27jmlZiv4PD4jhfNMofnLr2K5i8/0QwV1bDb7kfNy1WIxIIkxgBw==-lUKXT9IQ5GZ6d6RH4nnuOG4Bu6F5s6fC3VLsCfdtGKk=-Dt;5Ul:k7JU?v7[9\n"},
			},
		},
		{
			ID: RulePayPalSecret, Title: "PayPal client secret in a production block", Provider: "paypal",
			Severity: SeverityCritical, Kind: KindSecret, Env: envContext, prefix: 2,
			Format: "40..100 [0-9A-Za-z_-] under a *secret* key; live and sandbox secrets look alike: the endpoint or PAYPAL_MODE decides",
			TruePositives: []Example{
				{"paypal.yaml", "paypal:\n  mode: live\n  client_id: AZq8Lm3Nc7Xv2Bt5Ry9Wp4Ks6Dh1Gf0Jz8Qe3Ua7Io2Pm\n  client_secret: EKj4Tn8Wq2Zx6Cv1Bm5Nr9Yp3Ls7Hd0Fg4Ja8Xk2Qe6Wt1Uo5Ri9Py3Mz7Nc0Lv\n"},
				{"paypal.yaml", "paypal:\n  base_url: https://api-m.paypal.com\n  client_secret: EKj4Tn8Wq2Zx6Cv1Bm5Nr9Yp3Ls7Hd0Fg4Ja8Xk2Qe6Wt1Uo5Ri9Py3Mz7Nc0Lv\n"},
			},
			FalsePositives: []Example{
				{"paypal.yaml", "paypal:\n  mode: sandbox\n  client_secret: EKj4Tn8Wq2Zx6Cv1Bm5Nr9Yp3Ls7Hd0Fg4Ja8Xk2Qe6Wt1Uo5Ri9Py3Mz7Nc0Lv\n"},
				{"paypal.yaml", "paypal:\n  base_url: https://api-m.sandbox.paypal.com\n  client_secret: EKj4Tn8Wq2Zx6Cv1Bm5Nr9Yp3Ls7Hd0Fg4Ja8Xk2Qe6Wt1Uo5Ri9Py3Mz7Nc0Lv\n"},
			},
		},
		{
			ID: RuleTwilioAuthToken, Title: "Twilio auth token of a production account", Provider: "twilio",
			Severity: SeverityCritical, Kind: KindSecret, Env: envContext, prefix: 0,
			Format: "32 hex under a *token*/*auth* key; the account SID next to it (or the block) decides",
			TruePositives: []Example{
				{"twilio.env", "TWILIO_ACCOUNT_SID=AC0123456789abcdef0123456789abcdef\nTWILIO_AUTH_TOKEN=9f8e7d6c5b4a39281706f5e4d3c2b1a0\n"},
			},
			FalsePositives: []Example{
				{"twilio.env", "TWILIO_ACCOUNT_SID=ACfedcba9876543210fedcba9876543210\nTWILIO_AUTH_TOKEN=9f8e7d6c5b4a39281706f5e4d3c2b1a0\n"},
			},
		},
		{
			ID: RuleTwilioSID, Title: "Twilio production account SID", Provider: "twilio",
			Severity: SeverityMedium, Kind: KindEndpoint, Env: envIdentity, prefix: 2,
			Format: "AC + 32 hex, listed as production in the catalog",
			re:     mustRe(`\bAC[0-9a-f]{32}`),
			TruePositives: []Example{
				{"twilio.env", "TWILIO_ACCOUNT_SID=AC0123456789abcdef0123456789abcdef\n"},
			},
			FalsePositives: []Example{
				{"twilio.env", "TWILIO_ACCOUNT_SID=ACfedcba9876543210fedcba9876543210\n"},
			},
		},
		{
			ID: RuleSendGrid, Title: "SendGrid API key", Provider: "sendgrid",
			Severity: SeverityHigh, Kind: KindSecret, Env: envAlwaysLive, prefix: 3,
			Format: "SG.<22 [A-Za-z0-9_-]>.<43 [A-Za-z0-9_-]>; SendGrid has no test keys",
			re:     mustRe(`\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}`),
			TruePositives: []Example{
				{"mail.env", "SENDGRID_API_KEY=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\n"},
			},
			FalsePositives: []Example{
				{"mail.env", "SENDGRID_API_KEY=SG.xxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"},
			},
		},
		{
			ID: RuleMailgun, Title: "Mailgun API key", Provider: "mailgun",
			Severity: SeverityHigh, Kind: KindSecret, Env: envAlwaysLive, prefix: 4,
			Format: "key-<32 hex> (legacy) or <32 hex>-<8 hex>-<8 hex> under a *mailgun* key; a sandbox domain in the block makes it sandbox",
			re:     mustRe(`\bkey-[0-9a-f]{32}`),
			TruePositives: []Example{
				{"mail.env", "MAILGUN_API_KEY=key-3f9a1c7e5b2d8f4a6c0e9b1d3f5a7c92\n"},
				{"mail.env", "MAILGUN_API_KEY=8f2c9d1e7b4a6035c8e1f9d2a7b3c6e4-5d1f7a3c-9e2b4d6f\n"},
			},
			FalsePositives: []Example{
				{"mail.env", "MAILGUN_DOMAIN=sandbox7c1f2a9e.mailgun.org\nMAILGUN_API_KEY=key-3f9a1c7e5b2d8f4a6c0e9b1d3f5a7c92\n"},
			},
		},
		{
			ID: RulePostmark, Title: "Postmark server token", Provider: "postmark",
			Severity: SeverityHigh, Kind: KindSecret, Env: envAlwaysLive, prefix: 0,
			Format: "a UUID under a *postmark* key; the test token is the literal POSTMARK_API_TEST",
			TruePositives: []Example{
				{"mail.env", "POSTMARK_SERVER_TOKEN=6f1c2e9a-4b7d-4c3e-9a8f-2d5b7e1c9f04\n"},
			},
			FalsePositives: []Example{
				{"mail.env", "POSTMARK_SERVER_TOKEN=POSTMARK_API_TEST\n"},
				{"mail.env", "REQUEST_ID=6f1c2e9a-4b7d-4c3e-9a8f-2d5b7e1c9f04\n"},
			},
		},
		{
			ID: RuleSlackToken, Title: "Slack token", Provider: "slack",
			Severity: SeverityHigh, Kind: KindSecret, Env: envAlwaysLive, prefix: 5,
			Format: "xox[abposr]-<digits and letters separated by ->, or xapp-1-...; Slack has no test tokens",
			re:     mustRe(`\b(?:xox[abposr]-[0-9]{8,13}-[0-9A-Za-z-]{8,80}|xapp-[0-9]-[A-Z0-9]{8,12}-[0-9]{8,14}-[0-9a-f]{32,64})`),
			TruePositives: []Example{
				{"bot.yaml", "slack:\n  token: xoxb-2871459603-4815162342108-Qm7Xv2Lc9Nb4Kt1Rz8Wp3Ys6\n"},
			},
			FalsePositives: []Example{
				{"bot.yaml", "slack:\n  token: xoxb-your-token-here\n"},
			},
		},
		{
			ID: RuleSlackWebhook, Title: "Slack incoming webhook URL", Provider: "slack",
			Severity: SeverityMedium, Kind: KindSecret, Env: envAlwaysLive, prefix: 33,
			Format: "https://hooks.slack.com/services/T<id>/B<id>/<24 [A-Za-z0-9]>",
			re:     mustRe(`https://hooks\.slack\.com/(?:services|workflows)/T[A-Z0-9]{6,12}/B[A-Z0-9]{6,12}/[A-Za-z0-9]{20,40}`),
			TruePositives: []Example{
				{"alerts.ini", "[slack]\nwebhook = https://hooks.slack.com/services/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\n"},
			},
			FalsePositives: []Example{
				{"alerts.ini", "[slack]\nwebhook = https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX\n"},
			},
		},
		{
			ID: RuleGitHub, Title: "GitHub token", Provider: "github",
			Severity: SeverityHigh, Kind: KindSecret, Env: envAlwaysLive, prefix: 4,
			Format: "gh[pousr]_ + 36 [A-Za-z0-9], or github_pat_<22>_<59>",
			re:     mustRe(`\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})`),
			TruePositives: []Example{
				{"ci.env", "GITHUB_TOKEN=ghp_FLZDe1f8rESQedUStPKR0CsTy4Qwb8DwkNhF\n"},
			},
			FalsePositives: []Example{
				{"ci.env", "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"},
			},
		},
		{
			ID: RulePrivateKey, Title: "Private key (PEM)", Provider: "",
			Severity: SeverityHigh, Kind: KindSecret, Env: envAlwaysLive, prefix: 0,
			Format: "-----BEGIN [RSA |EC |DSA |OPENSSH |ENCRYPTED ]PRIVATE KEY----- with a base64 body of 64+ characters",
			re:     mustRe(`-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----`),
			TruePositives: []Example{
				{"tls.yaml", "tls:\n  key: |\n    -----BEGIN PRIVATE KEY-----\n    MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n    MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n    -----END PRIVATE KEY-----\n"},
			},
			FalsePositives: []Example{
				{"tls.yaml", "tls:\n  key: |\n    -----BEGIN PRIVATE KEY-----\n    ...\n    -----END PRIVATE KEY-----\n"},
			},
		},
		{
			ID: RuleAWSKeyID, Title: "AWS access key id of a production account", Provider: "aws",
			Severity: SeverityCritical, Kind: KindSecret, Env: envIdentity, prefix: 4,
			Format: "AKIA/ASIA + 16 base32; the account is decoded from the key id (legacy AKIAI/AKIAJ keys: by context)",
			re:     mustRe(`\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}`),
			TruePositives: []Example{
				{"aws.ini", "[default]\naws_access_key_id = AKIARZPUZDIKGLB5JZPW\n"},
			},
			FalsePositives: []Example{
				{"aws.ini", "[default]\naws_access_key_id = AKIATCH6YDSY6AAREIZU\n"},
				{"aws.ini", "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"},
			},
		},
		{
			ID: RuleAWSSecret, Title: "AWS secret access key of a production account", Provider: "aws",
			Severity: SeverityCritical, Kind: KindSecret, Env: envContext, prefix: 0,
			Format: "40 [A-Za-z0-9/+] under a *secret* key; the access key id beside it (or the block) decides",
			TruePositives: []Example{
				{"aws.ini", "[prod]\naws_access_key_id = AKIARZPUZDIKGLB5JZPW\naws_secret_access_key = q8Lm3Nc7Xv2Bt5Ry9Wp4Ks6Dh1Gf0Jz8Qe3Ua7I/\n"},
			},
			FalsePositives: []Example{
				{"aws.ini", "[dev]\naws_access_key_id = AKIATCH6YDSY6AAREIZU\naws_secret_access_key = q8Lm3Nc7Xv2Bt5Ry9Wp4Ks6Dh1Gf0Jz8Qe3Ua7I/\n"},
			},
		},
		{
			ID: RuleGCPServiceAcct, Title: "GCP service-account key of a production project", Provider: "gcp",
			Severity: SeverityCritical, Kind: KindSecret, Env: envIdentity, prefix: 0,
			Format: `service-account JSON: {"type": "service_account", "project_id": ..., "private_key": PEM}`,
			TruePositives: []Example{
				{"sa.json", `{"type": "service_account", "project_id": "acme-prod", "private_key_id": "1f2e3d", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\nMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n-----END PRIVATE KEY-----\n", "client_email": "ci@acme-prod.iam.gserviceaccount.com"}`},
			},
			FalsePositives: []Example{
				{"sa.json", `{"type": "service_account", "project_id": "acme-staging", "private_key_id": "1f2e3d", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\nMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n-----END PRIVATE KEY-----\n", "client_email": "ci@acme-staging.iam.gserviceaccount.com"}`},
			},
		},
		{
			ID: RuleJWT, Title: "JWT issued by or for production", Provider: "jwt",
			Severity: SeverityHigh, Kind: KindSecret, Env: envIdentity, prefix: 3,
			Format: "base64url(header).base64url(payload).signature whose iss or aud is a production issuer/audience",
			re:     mustRe(`\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*`),
			TruePositives: []Example{
				// {"alg":"HS256","typ":"JWT"} . {"iss":"https://auth.prod.example.com","sub":"svc"} . sig
				{"client.yaml", "auth:\n  token: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2F1dGgucHJvZC5leGFtcGxlLmNvbSIsInN1YiI6InN2YyJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmU\n"},
			},
			FalsePositives: []Example{
				// iss https://auth.staging.example.com
				{"client.yaml", "auth:\n  token: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2F1dGguc3RhZ2luZy5leGFtcGxlLmNvbSIsInN1YiI6InN2YyJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmU\n"},
			},
		},
		{
			ID: RuleDatabaseURL, Title: "Database or broker URL pointing at production", Provider: "",
			Severity: SeverityHigh, Kind: KindSecret, Env: envIdentity, prefix: 0,
			Format: "postgres/mysql/mongodb/redis/amqp/... URLs, JDBC strings, Go MySQL and libpq DSNs whose host is in a production zone or CIDR; kind endpoint when the password is absent or a reference",
			TruePositives: []Example{
				{"db.env", "DATABASE_URL=postgres://app:Zk4Qm8Xv2Lc7@db.prod.example.com:5432/app\n"},
				{"db.env", "DATABASE_URL=postgres://app:${DB_PASSWORD}@db.prod.example.com:5432/app\n"},
				{"db.properties", "spring.datasource.url=jdbc:postgresql://10.20.4.7:5432/app?user=app&password=Zk4Qm8Xv2Lc7\n"},
			},
			FalsePositives: []Example{
				{"db.env", "DATABASE_URL=postgres://app:Zk4Qm8Xv2Lc7@db.staging.example.com:5432/app\n"},
				{"db.properties", "spring.datasource.url=jdbc:postgresql://10.30.4.7:5432/app\n"},
			},
		},
		{
			ID: RuleEndpoint, Title: "Setting pointing at a production host or network", Provider: "",
			Severity: SeverityMedium, Kind: KindEndpoint, Env: envIdentity, prefix: 0,
			Format: "a URL, host name or IP whose host is in a production zone or CIDR",
			TruePositives: []Example{
				{"app.yaml", "billing:\n  url: https://billing.example.com/v2\n"},
				{"app.env", "CACHE_HOST=10.20.9.9\n"},
			},
			FalsePositives: []Example{
				{"app.yaml", "billing:\n  url: https://billing.staging.example.com/v2\n"},
			},
		},
		{
			ID: RuleFingerprint, Title: "Exact production secret (salted fingerprint match)", Provider: "",
			Severity: SeverityCritical, Kind: KindSecret, Env: envIdentity, prefix: 0,
			Format: "any value whose hex(sha256(salt || value)) is in the catalog's fingerprints",
			TruePositives: []Example{
				{"app.env", "SESSION_SIGNING_KEY=correct-horse-battery-staple-42\n"},
			},
			FalsePositives: []Example{
				{"app.env", "SESSION_SIGNING_KEY=correct-horse-battery-staple-43\n"},
			},
		},
		{
			ID: RuleGeneric, Title: "Credential in a block that names production", Provider: "",
			Severity: SeverityHigh, Kind: KindSecret, Env: envContext, prefix: 0,
			Format: "a credential-looking value under a *password*/*secret*/*token*/*key* setting in a block that names a production endpoint, mode or identity",
			TruePositives: []Example{
				{"app.yaml", "orders:\n  db_host: db.prod.example.com\n  db_password: Tq8Zm3Xc7Lv2Nb5W\n"},
				{"app.yaml", "payments:\n  environment: production\n  webhook_secret: whsec_Ga2Ke8UZk4Qm8Xv2Lc7Nb1Tr5\n"},
			},
			FalsePositives: []Example{
				{"app.yaml", "orders:\n  db_host: db.staging.example.com\n  db_password: Tq8Zm3Xc7Lv2Nb5W\n"},
				{"app.yaml", "payments:\n  environment: production\n  webhook_secret: ${WEBHOOK_SECRET}\n"},
				{"app.yaml", "payments:\n  environment: production\n  password_file: /run/secrets/payments\n"},
			},
		},
	}
}

// EnvName says how the rule knows a value is production: "in-value",
// "always-live", "identity" or "context".
func (r *Rule) EnvName() string { return r.Env.String() }
