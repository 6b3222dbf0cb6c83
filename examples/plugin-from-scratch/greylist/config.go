package main

import (
	"fmt"
	"math"
	"time"

	"github.com/mailgate/gateway/sdk"
)

// Default values of the settings, in one place: the schema, the parser
// and the README say the same.
const (
	defaultDelay = 60    // seconds
	defaultTTL   = "24h" // how long a triple is remembered
)

// schema is what the plugin tells the host about its config block. The
// host checks the HCL block against it (names, types) before any mail
// flows, fills in the defaults, and `gateway plugin probe` prints it.
func schema() []sdk.ConfigField {
	return []sdk.ConfigField{
		{
			Name:        "delay",
			Type:        sdk.TypeNumber,
			Default:     float64(defaultDelay),
			Description: "Seconds a sender must wait before its retry is let through.",
		},
		{
			Name:        "ttl",
			Type:        sdk.TypeString,
			Default:     defaultTTL,
			Description: "How long a triple is remembered (a Go duration, longer than delay).",
		},
	}
}

// config is the parsed config block.
type config struct {
	delay time.Duration
	ttl   time.Duration
}

// parseConfig checks what the schema cannot: the values themselves. The
// sdk has already refused unknown settings and wrong types and filled in
// the defaults, so a setting is either absent (a test's hand-made map) or
// of its schema type. Every problem is reported, as sdk.ConfigErrors, so
// the host shows them all with file:line.
func parseConfig(m map[string]any) (config, error) {
	c := config{delay: defaultDelay * time.Second}
	c.ttl, _ = time.ParseDuration(defaultTTL)
	var errs sdk.ConfigErrors
	bad := func(field, format string, a ...any) {
		errs = append(errs, &sdk.ConfigError{Field: field, Message: fmt.Sprintf(format, a...)})
	}
	if v, ok := m["delay"]; ok {
		n, ok := v.(float64)
		switch {
		case !ok:
			bad("delay", "want a number, got %T", v)
		case n < 1 || n > 24*3600 || n != math.Trunc(n):
			bad("delay", "%v: want a whole number of seconds from 1 to 86400", n)
		default:
			c.delay = time.Duration(n) * time.Second
		}
	}
	if v, ok := m["ttl"]; ok {
		s, ok := v.(string)
		d, err := time.ParseDuration(s)
		switch {
		case !ok:
			bad("ttl", "want a string, got %T", v)
		case err != nil:
			bad("ttl", "%q is not a duration (like \"24h\" or \"90m\")", s)
		default:
			c.ttl = d
		}
	}
	if len(errs) == 0 && c.ttl <= c.delay {
		bad("ttl", "%v is not longer than delay (%v): every retry would be greylisted again", c.ttl, c.delay)
	}
	if len(errs) > 0 {
		return config{}, errs
	}
	return c, nil
}
