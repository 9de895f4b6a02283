package secretscan

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTCPIsNotADatabaseScheme: dbSchemes says tcp is not a database
// scheme; dbLike used to range over the table's keys and so called
// tcp:// (and anything containing "tcp") a database URL.
func TestTCPIsNotADatabaseScheme(t *testing.T) {
	assert.False(t, dbLike("tcp"))
	assert.False(t, dbLike("tcp4"))
	assert.True(t, dbLike("postgresql"))
	assert.True(t, dbLike("redis+sentinel"))

	d, err := NewDetector(exampleProduction())
	require.NoError(t, err)
	fs, _ := d.Scan("app.env", []byte("STATSD_ADDR=tcp://metrics:Zk4Qm8Xv2Lc7@10.20.4.7:8125\n"))
	require.Len(t, fs, 1)
	assert.Equal(t, RuleEndpoint, fs[0].Rule, "a tcp:// address is an endpoint, not a database URL")
	assert.Equal(t, KindEndpoint, fs[0].Kind)
}

// TestJDBCInvalidUTF8: the JDBC parser looked a password key up in a
// lower-cased copy whose offsets differ on invalid UTF-8 and panicked
// (found by FuzzDSN).
func TestJDBCInvalidUTF8(t *testing.T) {
	d, err := NewDetector(exampleProduction())
	require.NoError(t, err)
	assert.NotPanics(t, func() { d.Scan("app.env", []byte("DB=jdbc:x:@\xb5pAssword=\n")) })
}

// TestPlaceholderMarksFitTheMask: isPlaceholder reads marks as bits of a
// uint64.
func TestPlaceholderMarksFitTheMask(t *testing.T) {
	require.LessOrEqual(t, len(placeholderMarks), 64)
	assert.True(t, isPlaceholder([]byte("key-xxxx")))
	assert.False(t, isPlaceholder([]byte("AQEo/ubK1cnyO4usRgnLSKrZfvQEXtpxxxxHIxm1cX5T4i8GFRJAJhWBP9Y02psx")))
}
