package nodeauth

import (
	"errors"
	"fmt"
	"time"
)

// Mode is how identity checks act on a stream whose node ID is not proven.
type Mode string

// Modes.
const (
	// ModeOff installs no check: every node ID is believed (the behaviour
	// before identity checks existed; `make run` on loopback).
	ModeOff Mode = "off"
	// ModeReport serves the claimed node's configuration and records a
	// would-deny: roll identity checks out in this mode first.
	ModeReport Mode = "report"
	// ModeEnforce refuses the stream with PERMISSION_DENIED.
	ModeEnforce Mode = "enforce"
)

// DefaultAudience is the audience projected ServiceAccount tokens must be
// issued for.
const DefaultAudience = "egressguard"

// Config is the "xds.identity" section of egressguard's configuration.
type Config struct {
	// Mode is off, report or enforce.
	Mode Mode `yaml:"mode" json:"mode"`
	// Audience is the audience a client's projected ServiceAccount token
	// must carry; TokenReview checks it.
	Audience string `yaml:"audience" json:"audience"`
	// ReviewTimeout bounds one TokenReview call to the API server.
	ReviewTimeout time.Duration `yaml:"review_timeout" json:"review_timeout"`
	// ReviewCacheTTL is how long a successful TokenReview is reused for
	// the same token (never past the token's exp): it bounds how long a
	// token stays accepted after its pod is deleted.
	ReviewCacheTTL time.Duration `yaml:"review_cache_ttl" json:"review_cache_ttl"`
	// ReviewCacheSize bounds the number of cached reviews (least recently
	// used evicted first).
	ReviewCacheSize int `yaml:"review_cache_size" json:"review_cache_size"`
	// Recent is how many refusals Recent keeps for the admin page.
	Recent int `yaml:"recent" json:"recent"`
}

// Defaults returns the section's defaults: checks off.
func Defaults() Config {
	return Config{Mode: ModeOff, Audience: DefaultAudience, ReviewTimeout: 5 * time.Second,
		ReviewCacheTTL: time.Minute, ReviewCacheSize: 10000, Recent: 100}
}

// Enabled reports whether a check is installed (report or enforce).
func (c Config) Enabled() bool { return c.Mode == ModeReport || c.Mode == ModeEnforce }

// Validate reports every problem of the section at once, with field paths.
// It runs whatever the mode, so a mistake surfaces before checks are
// switched on.
func (c Config) Validate() error {
	var errs []error
	switch c.Mode {
	case ModeOff, ModeReport, ModeEnforce:
	default:
		errs = append(errs, fmt.Errorf("xds.identity.mode: %q is not one of off, report, enforce", c.Mode))
	}
	if c.Audience == "" {
		errs = append(errs, errors.New("xds.identity.audience: must not be empty"))
	}
	if c.ReviewTimeout <= 0 {
		errs = append(errs, fmt.Errorf("xds.identity.review_timeout: %s must be positive", c.ReviewTimeout))
	}
	if c.ReviewCacheTTL <= 0 {
		errs = append(errs, fmt.Errorf("xds.identity.review_cache_ttl: %s must be positive", c.ReviewCacheTTL))
	}
	if c.ReviewCacheSize < 1 {
		errs = append(errs, fmt.Errorf("xds.identity.review_cache_size: %d must be at least 1", c.ReviewCacheSize))
	}
	if c.Recent < 1 {
		errs = append(errs, fmt.Errorf("xds.identity.recent: %d must be at least 1", c.Recent))
	}
	return errors.Join(errs...)
}
