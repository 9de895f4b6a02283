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
