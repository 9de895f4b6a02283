package policy

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestZoneHosts(t *testing.T) {
	assert.Equal(t, []string{"*.prod.example.com", "prod.example.com"}, ZoneHosts("*.prod.example.com"))
	assert.Equal(t, []string{"billing.example.com"}, ZoneHosts("billing.example.com"))
}
