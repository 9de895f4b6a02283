// Package secretscan finds production secrets in staging configuration.
//
// Generic secret scanners flag every key they see; secretscan answers a
// sharper question: does this (non-production) configuration carry something
// that can act on production? "Production" is not guessed: it comes from the
// operator's catalog, handed to the scanner as a Production value (hosts and
// networks through the project's one matcher, plan.Plan; cloud accounts,
// JWT issuers, provider account ids, salted fingerprints of vault values).
//
// # Pipeline
//
//	source (walk, stdin, git) ─► decoder (YAML, JSON, TOML, INI, env, properties, HCL, text;
//	                             base64 in Kubernetes Secrets) ─► items {key, value, line, scope}
//	                         ─► anchors (one Aho-Corasick pass per value) ─► rules
//	                         ─► scope context (nearest block with a production or sandbox marker)
//	                         ─► Finding (redacted at birth) ─► allow comments, ignore, baseline ─► report
//
// A value is only ever held inside the scanner; a Finding carries a redacted
// form and a fingerprint, never the value, so nothing downstream (reports,
// logs, baselines) can leak it.
//
// # Rules and environments
//
// A rule says how the environment of a credential is known:
//   - in the value itself (Stripe sk_live_ vs sk_test_, Braintree $production$
//     vs $sandbox$, Square sq0idp- vs sandbox-sq0idb-, Adyen live_ vs test_):
//     live values are always findings;
//   - always live (SendGrid, Slack, GitHub, Mailgun, Postmark, PEM private keys
//     have no test mode): a finding unless the block says sandbox;
//   - by identity decoded from the value (AWS key ids carry their account,
//     JWTs their issuer and audience, GCP service-account JSON its project);
//   - by context (PayPal client secrets, Adyen API keys, Square access tokens,
//     Twilio auth tokens, AWS secret keys and any other credential-named
//     setting): a finding only when the nearest enclosing block (YAML/JSON
//     object, INI/TOML section, HCL block, Kubernetes env list, paragraph of a
//     flat file, then the whole document) that names an environment names
//     production: a live provider endpoint or a production zone/CIDR from the
//     catalog, a production mode marker (PAYPAL_MODE=live,
//     SQUARE_ENVIRONMENT=production) or a production identity. When both
//     kinds of marker are in the same block, production wins (fail closed).
//
// # Fingerprints
//
// The catalog's fingerprints section holds exact production secret values,
// known only as salted hashes: hex(sha256(salt || value)), the salt being
// stored base64-encoded beside them. `egressguard scan fingerprints` (see
// MakeFingerprints) reads values from a vault export on standard input and
// writes the catalog section; the plaintext never leaves the machine that
// runs it. Every candidate value the decoders see is hashed and compared.
package secretscan
