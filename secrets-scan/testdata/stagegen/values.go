package stagegen

import (
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
)

// Value generators, written from the providers' documented formats (not from
// the detector's patterns): prefixes, lengths and alphabets as the providers
// publish them, random bodies from a seeded source.

const (
	alnum    = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	upperNum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	lowerNum = "0123456789abcdefghijklmnopqrstuvwxyz"
	hexd     = "0123456789abcdef"
	urlsafe  = alnum + "-_"
	b64chars = alnum + "+/"
)

type gen struct{ r *rand.Rand }

func (g gen) n(lo, hi int) int { return lo + g.r.IntN(hi-lo+1) }

func (g gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g gen) str(alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[g.r.IntN(len(alphabet))]
	}
	return string(b)
}

// password is a machine-generated secret: mixed case, digits, some symbols.
func (g gen) password() string {
	for {
		s := g.str(alnum+"!#%+=._", g.n(14, 32))
		if strings.ContainsAny(s, "0123456789") && strings.ContainsAny(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			return s
		}
	}
}

func (g gen) stripe(kind, mode string) string { // https://docs.stripe.com/keys
	return kind + "_" + mode + "_" + g.str(alnum, g.pickInt(24, 99))
}

func (g gen) pickInt(xs ...int) int { return xs[g.r.IntN(len(xs))] }

func (g gen) braintree(env string) string { // access_token$<env>$<merchant id>$<hex>
	return "access_token$" + env + "$" + g.str(lowerNum, 16) + "$" + g.str(hexd, 32)
}

// Square: https://developer.squareup.com/docs/build-basics/access-tokens
func (g gen) squareAppSecret(sandbox bool) string {
	if sandbox {
		return "sandbox-sq0csb-" + g.str(urlsafe, 43)
	}
	return "sq0csp-" + g.str(urlsafe, 43)
}

func (g gen) squareAppID(sandbox bool) string {
	if sandbox {
		return "sandbox-sq0idb-" + g.str(urlsafe, 22)
	}
	return "sq0idp-" + g.str(urlsafe, 22)
}

func (g gen) squareAccessToken() string { return "EAAA" + g.str(urlsafe, 60) }

func (g gen) adyenClientKey(live bool) string { // client keys: live_/test_ + 32
	p := "test_"
	if live {
		p = "live_"
	}
	return p + g.str(upperNum, 32)
}

func (g gen) adyenAPIKey() string { // AQE...==-...=-<suffix>
	return "AQE" + g.str(b64chars, g.n(80, 120)) + "==-" + g.str(b64chars, 43) + "=-" + g.str(alnum+"%;:?[]<", 16)
}

func (g gen) adyenLiveURL() string {
	return fmt.Sprintf("https://%s-%s-checkout-live.adyenpayments.com/checkout/v71", g.str(hexd, 16), g.pick("AcmeShop", "AcmeCOM", "Acme"))
}

func (g gen) paypalSecret() string   { return "E" + g.str(urlsafe, 79) }
func (g gen) paypalClientID() string { return "A" + g.str(urlsafe, 79) }

func (g gen) twilioSID() string   { return "AC" + g.str(hexd, 32) }
func (g gen) twilioToken() string { return g.str(hexd, 32) }

func (g gen) sendgrid() string { // SG.<22>.<43>
	return "SG." + g.str(urlsafe, 22) + "." + g.str(urlsafe, 43)
}

func (g gen) mailgun() string {
	if g.r.IntN(2) == 0 {
		return "key-" + g.str(hexd, 32)
	}
	return g.str(hexd, 32) + "-" + g.str(hexd, 8) + "-" + g.str(hexd, 8)
}

func (g gen) uuid() string {
	return g.str(hexd, 8) + "-" + g.str(hexd, 4) + "-4" + g.str(hexd, 3) + "-" + g.pick("8", "9", "a", "b") + g.str(hexd, 3) + "-" + g.str(hexd, 12)
}

func (g gen) slackToken() string {
	return g.pick("xoxb", "xoxp") + "-" + g.str("0123456789", g.n(10, 13)) + "-" + g.str("0123456789", g.n(10, 13)) + "-" + g.str(alnum, 24)
}

func (g gen) slackWebhook() string {
	return "https://hooks.slack.com/services/T" + g.str(upperNum, g.n(8, 10)) + "/B" + g.str(upperNum, g.n(8, 10)) + "/" + g.str(alnum, 24)
}

func (g gen) github() string {
	if g.r.IntN(4) == 0 {
		return "github_pat_" + g.str(alnum, 22) + "_" + g.str(alnum, 59)
	}
	return g.pick("ghp", "gho", "ghs", "ghu", "ghr") + "_" + g.str(alnum, 36)
}

// pem is a private key block with a random body.
func (g gen) pem() []string {
	kind := g.pick("RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY")
	lines := []string{"-----BEGIN " + kind + "-----"}
	for range g.n(4, 12) {
		lines = append(lines, g.str(b64chars, 64))
	}
	lines = append(lines, g.str(b64chars, g.n(8, 60))+"==", "-----END "+kind+"-----")
	return lines
}

// awsKeyID encodes an account id into an access key id: the account sits in
// bits 46..7 of the first six bytes of the base32-decoded characters 5..20.
func (g gen) awsKeyID(account uint64) string {
	var b [10]byte
	for i := range b {
		b[i] = byte(g.r.IntN(256))
	}
	var z8 [8]byte
	copy(z8[2:], b[:6])
	z := binary.BigEndian.Uint64(z8[:])
	z = z&^0x7fffffffff80 | account<<7 | 1<<47
	binary.BigEndian.PutUint64(z8[:], z)
	copy(b[:6], z8[2:])
	return g.pick("AKIA", "ASIA") + base32.StdEncoding.EncodeToString(b[:])
}

// awsLegacyKeyID starts with AKIAI/AKIAJ: no account encoded.
func (g gen) awsLegacyKeyID() string {
	return "AKIA" + g.pick("I", "J") + g.str("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 15)
}

func (g gen) awsSecret() string {
	for {
		s := g.str(b64chars, 40)
		if strings.ContainsAny(s, "0123456789") {
			return s
		}
	}
}

func (g gen) jwt(claims map[string]any) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": g.pick("RS256", "HS256", "ES256"), "typ": "JWT", "kid": g.str(hexd, 8)})
	p, _ := json.Marshal(claims)
	return enc.EncodeToString(h) + "." + enc.EncodeToString(p) + "." + enc.EncodeToString([]byte(g.str(alnum, 32)))
}

func (g gen) gcpServiceAccount(project string) string {
	key := strings.Join(g.pem(), "\n") + "\n"
	sa := map[string]string{
		"type": "service_account", "project_id": project, "private_key_id": g.str(hexd, 40),
		"private_key": key, "client_email": g.pick("ci", "deployer", "app") + "@" + project + ".iam.gserviceaccount.com",
		"client_id": g.str("0123456789", 21), "auth_uri": "https://accounts.google.com/o/oauth2/auth",
		"token_uri": "https://oauth2.googleapis.com/token",
	}
	b, _ := json.MarshalIndent(sa, "", "  ")
	return string(b)
}
