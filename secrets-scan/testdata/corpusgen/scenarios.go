package corpusgen

import (
	"fmt"
	"strconv"
)

// setting is one key/value a scenario puts in its block. rule, when set,
// is the finding the setting must produce (a positive label); the setting's
// line is the label's line.
type setting struct {
	key   string
	value string
	lines []string // multi-line value (PEM); value is then ignored
	rule  string
	// noComment: formats without comments cannot carry it (JSON).
	allow string // an egressguard:allow reason put on the line above
}

// scenario is a block of settings with the labels it implies.
type scenario struct {
	name     string
	positive bool
	block    string // suggested block name
	settings []setting
	// kind restricts where the scenario can go ("" = anywhere).
	needsBlock bool // its verdict depends on the block: keep filler credentials out
}

// Rule ids, as the product documents them (docs, SARIF): the corpus labels
// refer to them by name only.
const (
	rStripeSK   = "stripe-live-secret-key"
	rStripeRK   = "stripe-live-restricted-key"
	rStripePK   = "stripe-live-publishable-key"
	rBraintree  = "braintree-production-access-token"
	rSquareSec  = "square-production-application-secret"
	rSquareID   = "square-production-application-id"
	rSquareTok  = "square-access-token"
	rAdyenCK    = "adyen-live-client-key"
	rAdyenAPI   = "adyen-api-key"
	rPayPal     = "paypal-client-secret"
	rTwilioTok  = "twilio-auth-token"
	rTwilioSID  = "twilio-production-account-sid"
	rSendGrid   = "sendgrid-api-key"
	rMailgun    = "mailgun-api-key"
	rPostmark   = "postmark-server-token"
	rSlack      = "slack-token"
	rSlackHook  = "slack-webhook-url"
	rGitHub     = "github-token"
	rPrivateKey = "private-key"
	rAWSKeyID   = "aws-production-access-key-id"
	rAWSSecret  = "aws-secret-access-key"
	rGCP        = "gcp-production-service-account-key"
	rJWT        = "production-jwt"
	rDBURL      = "production-database-url"
	rEndpoint   = "production-endpoint"
	rFP         = "production-secret-fingerprint"
	rGeneric    = "production-context-credential"
)

// scenarios returns one random scenario (positive or negative).
func (c *Catalog) scenario(g gen) scenario {
	i := g.r.IntN(len(scenarioMakers))
	return scenarioMakers[i](c, g)
}

var scenarioMakers = []func(c *Catalog, g gen) scenario{
	// --- environment in the value ---
	func(c *Catalog, g gen) scenario {
		kind := g.pick("sk", "rk", "pk")
		rule := map[string]string{"sk": rStripeSK, "rk": rStripeRK, "pk": rStripePK}[kind]
		return scenario{name: "stripe live", positive: true, block: "stripe", settings: []setting{
			{key: "api_version", value: "2024-06-20"},
			{key: g.pick("secret_key", "STRIPE_SECRET_KEY", "apiKey", "key"), value: g.stripe(kind, "live"), rule: rule},
		}}
	},
	func(c *Catalog, g gen) scenario {
		return scenario{name: "stripe test", block: "stripe", settings: []setting{
			{key: "api_base", value: "https://api.stripe.com"},
			{key: g.pick("secret_key", "STRIPE_SECRET_KEY"), value: g.stripe(g.pick("sk", "rk", "pk"), "test")},
		}}
	},
	func(c *Catalog, g gen) scenario {
		return scenario{name: "stripe placeholder", block: "stripe", settings: []setting{
			{key: "secret_key", value: g.pick("sk_live_xxxxxxxxxxxxxxxxxxxxxxxx", "${STRIPE_SECRET_KEY}", "<REDACTED>", "sk_live_...", "changeme", "vault:secret/data/prod/stripe#secret_key")},
		}}
	},
	func(c *Catalog, g gen) scenario {
		prod := g.r.IntN(2) == 0
		env := map[bool]string{true: "production", false: "sandbox"}[prod]
		s := setting{key: g.pick("BRAINTREE_ACCESS_TOKEN", "access_token", "paypalAccessToken"), value: g.braintree(env)}
		if prod {
			s.rule = rBraintree
		}
		return scenario{name: "braintree " + env, positive: prod, block: "braintree", settings: []setting{s}}
	},
	func(c *Catalog, g gen) scenario {
		sandbox := g.r.IntN(2) == 0
		sec := setting{key: "application_secret", value: g.squareAppSecret(sandbox)}
		id := setting{key: "application_id", value: g.squareAppID(sandbox)}
		if !sandbox {
			sec.rule, id.rule = rSquareSec, rSquareID
		}
		return scenario{name: "square app credentials", positive: !sandbox, block: "square", settings: []setting{id, sec}}
	},
	func(c *Catalog, g gen) scenario {
		live := g.r.IntN(2) == 0
		s := setting{key: g.pick("clientKey", "ADYEN_CLIENT_KEY"), value: g.adyenClientKey(live)}
		if live {
			s.rule = rAdyenCK
		}
		return scenario{name: "adyen client key", positive: live, block: "adyen", settings: []setting{s}}
	},
	// --- environment from the block ---
	func(c *Catalog, g gen) scenario {
		prod := g.r.IntN(2) == 0
		env := g.pick("SQUARE_ENVIRONMENT", "square_environment", "environment")
		val := map[bool]string{true: "production", false: "sandbox"}[prod]
		host := map[bool]string{true: "https://connect.squareup.com", false: "https://connect.squareupsandbox.com"}[prod]
		tok := setting{key: g.pick("SQUARE_ACCESS_TOKEN", "access_token"), value: g.squareAccessToken()}
		if prod {
			tok.rule = rSquareTok
		}
		ss := []setting{tok}
		if g.r.IntN(2) == 0 {
			ss = append([]setting{{key: env, value: val}}, ss...)
		} else {
			ss = append(ss, setting{key: g.pick("SQUARE_BASE_URL", "base_url"), value: host})
		}
		return scenario{name: "square access token " + val, positive: prod, block: "square", settings: ss, needsBlock: true}
	},
	func(c *Catalog, g gen) scenario {
		return scenario{name: "square access token without context", block: "square", settings: []setting{
			{key: "SQUARE_ACCESS_TOKEN", value: g.squareAccessToken()},
		}, needsBlock: true}
	},
	func(c *Catalog, g gen) scenario {
		prod := g.r.IntN(2) == 0
		url := "https://checkout-test.adyen.com/v71"
		if prod {
			url = g.adyenLiveURL()
		}
		key := setting{key: g.pick("apiKey", "ADYEN_API_KEY", "x_api_key"), value: g.adyenAPIKey()}
		if prod {
			key.rule = rAdyenAPI
		}
		return scenario{name: "adyen api key", positive: prod, block: "adyen", needsBlock: true, settings: []setting{
			{key: g.pick("checkoutEndpoint", "ADYEN_ENDPOINT", "endpoint"), value: url}, key,
			{key: "merchantAccount", value: "AcmeCOM"},
		}}
	},
	func(c *Catalog, g gen) scenario {
		prod := g.r.IntN(2) == 0
		var marker setting
		if g.r.IntN(2) == 0 {
			marker = setting{key: g.pick("mode", "PAYPAL_MODE", "paypalMode"), value: map[bool]string{true: "live", false: "sandbox"}[prod]}
		} else {
			marker = setting{key: g.pick("base_url", "PAYPAL_API_BASE"), value: map[bool]string{true: "https://api-m.paypal.com", false: "https://api-m.sandbox.paypal.com"}[prod]}
		}
		sec := setting{key: g.pick("client_secret", "PAYPAL_CLIENT_SECRET", "clientSecret"), value: g.paypalSecret()}
		if prod {
			sec.rule = rPayPal
		}
		return scenario{name: "paypal client secret", positive: prod, block: "paypal", needsBlock: true, settings: []setting{
			marker, {key: g.pick("client_id", "PAYPAL_CLIENT_ID"), value: g.paypalClientID()}, sec,
		}}
	},
	func(c *Catalog, g gen) scenario {
		prod := g.r.IntN(2) == 0
		sid := setting{key: g.pick("TWILIO_ACCOUNT_SID", "account_sid", "accountSid")}
		tok := setting{key: g.pick("TWILIO_AUTH_TOKEN", "auth_token", "authToken"), value: g.twilioToken()}
		if prod {
			sid.value = c.TwilioSIDs[g.r.IntN(len(c.TwilioSIDs))]
			sid.rule, tok.rule = rTwilioSID, rTwilioTok
		} else {
			sid.value = g.twilioSID()
		}
		return scenario{name: "twilio", positive: prod, block: "twilio", needsBlock: true, settings: []setting{sid, tok}}
	},
	// --- no test mode: always live ---
	func(c *Catalog, g gen) scenario {
		return scenario{name: "sendgrid", positive: true, block: "sendgrid", settings: []setting{
			{key: g.pick("SENDGRID_API_KEY", "api_key", "apiKey"), value: g.sendgrid(), rule: rSendGrid},
		}}
	},
	func(c *Catalog, g gen) scenario {
		sandbox := g.r.IntN(2) == 0
		ss := []setting{{key: g.pick("MAILGUN_API_KEY", "mailgun_api_key"), value: g.mailgun()}}
		if sandbox {
			ss = append(ss, setting{key: "MAILGUN_DOMAIN", value: "sandbox" + g.str(hexd, 32) + ".mailgun.org"})
		} else {
			ss[0].rule = rMailgun
			ss = append(ss, setting{key: "MAILGUN_DOMAIN", value: "mg.acme.test"})
		}
		return scenario{name: "mailgun", positive: !sandbox, block: "mailgun", needsBlock: true, settings: ss}
	},
	func(c *Catalog, g gen) scenario {
		test := g.r.IntN(2) == 0
		s := setting{key: g.pick("POSTMARK_SERVER_TOKEN", "postmark_api_token", "postmarkToken")}
		if test {
			s.value = "POSTMARK_API_TEST"
		} else {
			s.value, s.rule = g.uuid(), rPostmark
		}
		return scenario{name: "postmark", positive: !test, block: "postmark", settings: []setting{s}}
	},
	func(c *Catalog, g gen) scenario {
		if g.r.IntN(2) == 0 {
			return scenario{name: "slack token", positive: true, block: "slack", settings: []setting{
				{key: g.pick("SLACK_BOT_TOKEN", "token"), value: g.slackToken(), rule: rSlack}}}
		}
		return scenario{name: "slack webhook", positive: true, block: "slack", settings: []setting{
			{key: g.pick("SLACK_WEBHOOK_URL", "webhook"), value: g.slackWebhook(), rule: rSlackHook}}}
	},
	func(c *Catalog, g gen) scenario {
		return scenario{name: "slack placeholders", block: "slack", settings: []setting{
			{key: "SLACK_BOT_TOKEN", value: g.pick("xoxb-your-token-here", "xoxb-0000000000-0000000000-XXXXXXXXXXXXXXXXXXXXXXXX")},
			{key: "SLACK_WEBHOOK_URL", value: "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"},
		}}
	},
	func(c *Catalog, g gen) scenario {
		return scenario{name: "github token", positive: true, block: "github", settings: []setting{
			{key: g.pick("GITHUB_TOKEN", "GH_TOKEN", "token"), value: g.github(), rule: rGitHub}}}
	},
	func(c *Catalog, g gen) scenario {
		return scenario{name: "private key", positive: true, block: "tls", settings: []setting{
			{key: g.pick("key", "tls.key", "private_key", "signing_key"), lines: g.pem(), rule: rPrivateKey}}}
	},
	func(c *Catalog, g gen) scenario {
		return scenario{name: "private key placeholder", block: "tls", settings: []setting{
			{key: "key", lines: []string{"-----BEGIN PRIVATE KEY-----", "...", "-----END PRIVATE KEY-----"}}}}
	},
	// --- identities ---
	func(c *Catalog, g gen) scenario {
		prod := g.r.IntN(2) == 0
		accts := c.NonProdAWSAccounts
		if prod {
			accts = c.AWSAccounts
		}
		n, _ := strconv.ParseUint(accts[g.r.IntN(len(accts))], 10, 64)
		id := setting{key: g.pick("aws_access_key_id", "AWS_ACCESS_KEY_ID", "accessKeyId"), value: g.awsKeyID(n)}
		sec := setting{key: g.pick("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", "secretAccessKey"), value: g.awsSecret()}
		if prod {
			id.rule, sec.rule = rAWSKeyID, rAWSSecret
		}
		return scenario{name: "aws keys", positive: prod, block: "aws", needsBlock: true, settings: []setting{id, sec}}
	},
	func(c *Catalog, g gen) scenario {
		return scenario{name: "aws docs example key", block: "aws", settings: []setting{
			{key: "aws_access_key_id", value: "AKIAIOSFODNN7EXAMPLE"},
			{key: "aws_secret_access_key", value: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
		}}
	},
	func(c *Catalog, g gen) scenario {
		return scenario{name: "aws legacy key, no context", block: "aws", needsBlock: true, settings: []setting{
			{key: "aws_access_key_id", value: g.awsLegacyKeyID()}}}
	},
	func(c *Catalog, g gen) scenario {
		prod := g.r.IntN(2) == 0
		claims := map[string]any{"sub": "svc-" + g.str(lowerNum, 6), "exp": 1900000000 + g.r.IntN(1e6)}
		if prod {
			if g.r.IntN(2) == 0 {
				claims["iss"] = c.JWTIssuers[0]
			} else {
				claims["iss"] = "https://auth.staging.acme.test"
				claims["aud"] = []string{"web", c.JWTAudiences[0]}
			}
		} else {
			claims["iss"] = "https://auth.staging.acme.test"
			claims["aud"] = "payments-api-staging"
		}
		s := setting{key: g.pick("token", "SERVICE_JWT", "bearer"), value: g.jwt(claims)}
		if prod {
			s.rule = rJWT
		}
		return scenario{name: "jwt", positive: prod, block: "auth", settings: []setting{s}}
	},
	func(c *Catalog, g gen) scenario {
		prod := g.r.IntN(2) == 0
		host := g.pick("db", "orders-db", "pg-main") + ".prod.acme.test"
		if g.r.IntN(3) == 0 {
			host = fmt.Sprintf("10.20.%d.%d", g.n(0, 255), g.n(1, 254))
		}
		if !prod {
			host = g.pick("db", "orders-db") + ".staging.acme.test"
		}
		pw := g.password()
		if g.r.IntN(3) == 0 {
			pw = "${DB_PASSWORD}"
		}
		var v string
		switch g.r.IntN(5) {
		case 0:
			v = fmt.Sprintf("postgres://app:%s@%s:5432/orders?sslmode=require", pw, host)
		case 1:
			v = fmt.Sprintf("mysql://app:%s@%s:3306/shop", pw, host)
		case 2:
			v = fmt.Sprintf("redis://:%s@%s:6379/0", pw, host)
		case 3:
			v = fmt.Sprintf("amqp://app:%s@%s:5672/vhost", pw, host)
		default:
			v = fmt.Sprintf("jdbc:postgresql://%s:5432/orders?user=app&password=%s", host, pw)
		}
		s := setting{key: g.pick("DATABASE_URL", "url", "spring.datasource.url", "dsn"), value: v}
		if prod {
			s.rule = rDBURL
		}
		return scenario{name: "database url", positive: prod, block: "database", settings: []setting{s}}
	},
	func(c *Catalog, g gen) scenario {
		prod := g.r.IntN(2) == 0
		host := g.pick("payments.acme.test", "api.prod.acme.test", "ledger.prod.acme.test")
		if !prod {
			host = g.pick("payments.staging.acme.test", "api.staging.acme.test")
		}
		v := "https://" + host + "/v1"
		if g.r.IntN(2) == 0 {
			v = host
		}
		s := setting{key: g.pick("LEDGER_URL", "upstream_host", "billingEndpoint"), value: v}
		if prod {
			s.rule = rEndpoint
		}
		return scenario{name: "endpoint", positive: prod, block: "upstream", settings: []setting{s, {key: "timeout_ms", value: "2500"}}}
	},
	func(c *Catalog, g gen) scenario {
		prod := g.r.IntN(2) == 0
		v := c.FingerprintValues[g.r.IntN(len(c.FingerprintValues))]
		s := setting{key: g.pick("SESSION_SIGNING_KEY", "encryption_key", "masterKey"), value: v, rule: rFP}
		if !prod {
			s.value, s.rule = v+"x", "" // one character off: a different secret
		}
		return scenario{name: "fingerprint", positive: prod, block: "crypto", settings: []setting{s}}
	},
	func(c *Catalog, g gen) scenario {
		prod := g.r.IntN(2) == 0
		host := g.pick("orders-db", "ledger-db") + ".prod.acme.test"
		hostRule := rEndpoint
		if !prod {
			host, hostRule = g.pick("orders-db", "ledger-db")+".staging.acme.test", ""
		}
		pw := setting{key: g.pick("db_password", "DB_PASSWORD", "password"), value: g.password()}
		if prod {
			pw.rule = rGeneric
		}
		return scenario{name: "credential next to a production host", positive: prod, block: "orders", needsBlock: true, settings: []setting{
			{key: g.pick("db_host", "DB_HOST", "host"), value: host, rule: hostRule}, {key: "db_user", value: "orders"}, pw,
		}}
	},
	func(c *Catalog, g gen) scenario {
		// Allowed inline: a live key with a documented reason is not reported.
		return scenario{name: "allowed live key", block: "stripe", settings: []setting{
			{key: "secret_key", value: g.stripe("sk", "live"), allow: "revoked key kept for the replay test, SEC-" + g.str("0123456789", 4)},
		}}
	},
	func(c *Catalog, g gen) scenario {
		return scenario{name: "references", block: "secrets", settings: []setting{
			{key: "stripe_secret_key", value: "${STRIPE_SECRET_KEY}"},
			{key: "paypal_client_secret", value: "vault:secret/data/prod/paypal#client_secret"},
			{key: "db_password", value: g.pick("changeme", "<REDACTED>", "$(DB_PASSWORD)", "{{ .Values.dbPassword }}", "ENC[AES256_GCM,data:"+g.str(b64chars, 24)+",type:str]")},
		}}
	},
}

// gcpScenario is a service-account JSON (a file of its own or Secret data).
func (c *Catalog) gcpScenario(g gen) (json string, prod bool) {
	prod = g.r.IntN(2) == 0
	p := c.NonProdGCPProjects[g.r.IntN(len(c.NonProdGCPProjects))]
	if prod {
		p = c.GCPProjects[g.r.IntN(len(c.GCPProjects))]
	}
	return g.gcpServiceAccount(p), prod
}
