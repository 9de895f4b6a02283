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
//	                         ─► evidence (per provider; production connections per block)
//	                         ─► Finding (redacted at birth) ─► allow comments, ignore, baseline ─► report
//
// A value is only ever held inside the scanner; a Finding carries a redacted
// form and a fingerprint, never the value, so nothing downstream (reports,
// logs, baselines) can leak it.
//
// # Rules and environments
//
// Each rule is declared whole in one file per provider (rules_*.go): its
// pattern and anchors, how it knows the environment, its message, and its
// own true and false positives. The detector builds one Aho-Corasick
// automaton from all rules' anchors when it is created.
//
// A rule says how the environment of a credential is known:
//   - in the value itself (Stripe sk_live_ vs sk_test_, Braintree
//     $production$ vs $sandbox$, Square sq0idp- vs sandbox-sq0idb-, Adyen
//     live_ vs test_): live values are always findings; live publishable
//     keys and client ids are KindIdentifier, not secrets;
//   - by identity decoded from the value (AWS key ids carry their account,
//     JWTs their issuer and audience, GCP service-account JSON its project,
//     Twilio SIDs are listed as production accounts);
//   - always live (SendGrid, Slack, GitHub, Mailgun, Postmark, PEM private
//     keys have no test mode): a production secret when the provider's own
//     evidence says so, nothing when it says sandbox, and otherwise
//     KindCredential with EnvUnknown (it may be staging's own), which does
//     not fail a scan unless FailOn.Unknown;
//   - by evidence (PayPal client secrets, Adyen API keys, Square access
//     tokens, Twilio auth tokens, AWS secret keys): a finding only when
//     evidence for that provider says production: its live endpoint from
//     the catalog, its mode setting (PAYPAL_MODE=live), its production
//     identity (the AWS key id or Twilio SID the secret pairs with, in
//     either order), a live-mode identifier of the same provider. Evidence
//     is looked for in the credential's block, then enclosing blocks, never
//     across a document; production wins inside one block.
//
// Evidence binds to its provider: evidence for provider P never upgrades a
// credential of provider Q. A production host, ENVIRONMENT=production or
// another provider's live key upgrades nothing. A generic credential (a
// password, signing key or token of no known provider) is production only
// as part of a production connection: its block sets a production host
// under the same connection prefix (DB_HOST and DB_PASSWORD) or the block
// is named as one connection (db:, datasource:), or it matches a
// fingerprint.
//
// Values that hold encoded configuration (a JSON object in a string,
// base64 of JSON or KEY=value text) are decoded recursively, at most
// maxDecodeDepth levels and maxDecodedSize bytes each; findings point at
// the outermost key in the original file.
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
