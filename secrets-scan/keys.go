package secretscan

import "bytes"

// keyClass is what a setting's name says about its value.
type keyClass struct {
	secret   bool   // password, secret, token, api key, ...
	host     bool   // host, url, endpoint, dsn, ...
	mode     bool   // mode, env, environment, stage
	live     int8   // livemode-style boolean: +1 true means live, -1 true means sandbox
	provider string // provider named in the key
}

var knownProviders = []string{"paypal", "braintree", "square", "adyen", "twilio", "stripe", "sendgrid",
	"mailgun", "postmark", "slack", "github", "aws", "gcp"}

// lowerASCII writes the lower-case form of b into dst.
func lowerASCII(dst, b []byte) []byte {
	dst = dst[:0]
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

func hasAny(s []byte, words ...string) bool {
	for _, w := range words {
		if bytes.Contains(s, []byte(w)) {
			return true
		}
	}
	return false
}

func hasSuffixAny(s []byte, words ...string) bool {
	for _, w := range words {
		if bytes.HasSuffix(s, []byte(w)) {
			return true
		}
	}
	return false
}

// classifyKey looks at a setting name (any case, any separator).
func classifyKey(buf *[]byte, key []byte) keyClass {
	var kc keyClass
	*buf = (*buf)[:0]
	if len(key) == 0 || len(key) > 128 {
		return kc
	}
	full := lowerASCII((*buf)[:0], key)
	*buf = full
	for _, p := range knownProviders {
		if bytes.Contains(full, []byte(p)) {
			kc.provider = p
			break
		}
	}
	// The setting's own name is the last segment of a dotted path
	// (spring.datasource.password, paypal.client.secret).
	k := full
	if i := bytes.LastIndexByte(k, '.'); i >= 0 && i < len(k)-1 {
		k = k[i+1:]
	}
	// Names that hold a reference to a secret or describe it, not the secret.
	notValue := hasSuffixAny(k, "url", "uri", "endpoint", "name", "file", "path", "ref", "_id", "-id", ".id", "type",
		"length", "ttl", "expiry", "expires", "header", "env", "policy", "version", "enabled", "dir", "count", "size", "prefix",
		"mode", "format", "algorithm", "region", "user", "username", "method") ||
		hasAny(k, "secretref", "secretkeyref", "secretname", "keyref", "keyid", "key_id", "valuefrom", "public", "pubkey", "public_key")
	if !notValue && hasAny(k, "password", "passwd", "pwd", "secret", "token", "apikey", "api_key", "api-key",
		"accesskey", "access_key", "privatekey", "private_key", "credential", "authtoken", "auth_token", "auth-token",
		"authkey", "auth_key", "authorization", "signingkey", "signing_key", "passphrase", "encryptionkey", "encryption_key") {
		kc.secret = true
	}
	if hasSuffixAny(k, "host", "hostname", "url", "uri", "endpoint", "server", "servers", "addr", "address", "dsn", "broker", "brokers", "base", "baseurl", "base_url", "domain") {
		kc.host = true
	}
	if hasSuffixAny(k, "mode", "env", "environment", "stage", "tier") {
		kc.mode = true
	}
	switch {
	case hasSuffixAny(k, "livemode", "live_mode", "live-mode", "use_live", "uselive", "islive", "is_live", "production"):
		kc.live = 1
	case hasSuffixAny(k, "sandbox", "use_sandbox", "usesandbox", "testmode", "test_mode", "test-mode", "is_sandbox", "issandbox"):
		kc.live = -1
	}
	return kc
}

// modeValue maps a mode setting's value to +1 production, -1 sandbox, 0
// unknown.
func modeValue(v []byte) int {
	var b [16]byte
	if len(v) > len(b) {
		return 0
	}
	l := lowerASCII(b[:0], bytes.Trim(v, `"' `))
	switch string(l) {
	case "production", "prod", "live", "prd":
		return 1
	case "sandbox", "test", "testing", "staging", "stage", "development", "dev", "qa", "uat":
		return -1
	}
	return 0
}

// boolValue parses YAML/env booleans.
func boolValue(v []byte) (val, ok bool) {
	var b [8]byte
	if len(v) > len(b) {
		return false, false
	}
	switch string(lowerASCII(b[:0], bytes.Trim(v, `"' `))) {
	case "true", "yes", "on", "1":
		return true, true
	case "false", "no", "off", "0":
		return false, true
	}
	return false, false
}
