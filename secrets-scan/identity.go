package secretscan

import (
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// awsAccountFromKeyID decodes the AWS account id encoded in an access key
// id (AKIA/ASIA...): base32-decode characters 5..20, take the first six
// bytes big-endian as z; account = (z & 0x7fffffffff80) >> 7. Legacy keys
// (AKIAI..., AKIAJ...) do not encode it: ok is false.
func awsAccountFromKeyID(id []byte) (account string, ok bool) {
	if len(id) != 20 || id[4] == 'I' || id[4] == 'J' {
		return "", false
	}
	var dst [10]byte
	n, err := base32.StdEncoding.Decode(dst[:], id[4:])
	if err != nil || n != 10 {
		return "", false
	}
	var z8 [8]byte
	copy(z8[2:], dst[:6])
	z := binary.BigEndian.Uint64(z8[:])
	acct := (z & 0x7fffffffff80) >> 7
	if acct > 999_999_999_999 { // not a 12-digit account: not an encoded key id
		return "", false
	}
	return fmt.Sprintf("%012d", acct), true
}

// jwtClaims decodes the iss and aud claims of a JWT without verifying it.
func jwtClaims(tok []byte) (iss string, aud []string, ok bool) {
	parts := bytes.SplitN(tok, []byte("."), 3)
	if len(parts) < 2 {
		return "", nil, false
	}
	payload := make([]byte, base64.RawURLEncoding.DecodedLen(len(parts[1])))
	n, err := base64.RawURLEncoding.Decode(payload, bytes.TrimRight(parts[1], "="))
	if err != nil {
		return "", nil, false
	}
	var claims struct {
		Iss string          `json:"iss"`
		Aud json.RawMessage `json:"aud"`
	}
	if json.Unmarshal(payload[:n], &claims) != nil {
		return "", nil, false
	}
	if len(claims.Aud) > 0 {
		var one string
		if json.Unmarshal(claims.Aud, &one) == nil {
			aud = []string{one}
		} else {
			_ = json.Unmarshal(claims.Aud, &aud)
		}
	}
	return claims.Iss, aud, true
}
