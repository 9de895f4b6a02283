package plan

import (
	"encoding/base64"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzBasicUserRegex: the expression BasicUserRegex gives for a prefix or
// exact user match holds on a raw Authorization value exactly when
// DecideRequest's BasicUser condition does.
func FuzzBasicUserRegex(f *testing.F) {
	f.Add("sk_live_", false, false, "sk_live_abc", "", byte(0))
	f.Add("AC0123", true, true, "ac0123", "pw", byte(1))
	f.Add("rk_test_", false, false, "rk_test_x", "", byte(2))
	f.Add("ab", true, false, "AB", "", byte(3))
	f.Add("a", false, true, "a", "", byte(4))
	f.Fuzz(func(t *testing.T, want string, ignoreCase, exact bool, user, pass string, form byte) {
		if want == "" || len(want) > 12 || len(user)+len(pass) > 64 {
			return
		}
		m := &StringMatch{Prefix: want, IgnoreCase: ignoreCase}
		if exact {
			m = &StringMatch{Exact: want, IgnoreCase: ignoreCase}
		}
		expr, ok := BasicUserRegex(m)
		if !ok {
			return
		}
		re, err := regexp.Compile("^(?:" + expr + ")$")
		require.NoError(t, err, expr)
		cred := user
		if form&1 == 0 {
			cred += ":" + pass
		}
		enc := base64.StdEncoding
		switch form >> 1 % 4 {
		case 1:
			enc = base64.RawStdEncoding
		case 2:
			enc = base64.URLEncoding
		case 3:
			enc = base64.RawURLEncoding
		}
		scheme := []string{"Basic ", "basic  ", "BASIC ", "Bearer "}[form>>3%4]
		value := scheme + enc.EncodeToString([]byte(cred))
		if form&0x40 != 0 {
			value += "=" // bad padding
		}
		var buf [maxBasicLen]byte
		u, decoded := basicUser(value, &buf)
		plan := decoded && m.matchBytes(u)
		require.Equal(t, plan, re.MatchString(value), "%q: plan %v, expression %s", value, plan, expr)
	})
}

func TestBasicUserRegexRefusesRegex(t *testing.T) {
	_, ok := BasicUserRegex(&StringMatch{Regex: "sk_.*"})
	require.False(t, ok)
	_, ok = BasicUserRegex(&StringMatch{Prefix: "a:b"})
	require.False(t, ok)
}
