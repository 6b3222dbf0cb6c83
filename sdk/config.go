package sdk

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is a typed, read-only view of the config block a Configurer
// receives: sdk.Config(m).String("message").
//
// On the host's path the sdk has already checked the block against the
// schema (Info.ValidateConfig) and filled in the defaults
// (Info.ApplyDefaults) before Configure runs, so every setting is declared,
// has its schema type in the canonical Go form (string, float64, bool,
// []string, map[string]string), and is present when it has a default. A
// plugin therefore checks neither names nor types: it reads values with
// these accessors and validates only what the schema cannot say (a URL, a
// domain, one of a set of words, a file that exists).
//
// The accessors also take the generic forms a test (or a generic decoder)
// may pass when calling Configure directly: []any of strings for a list,
// map[string]any of strings for a map, and any Go integer or float type
// for a number. A setting that is absent, or whose value has another type,
// reads as the zero value; Duration reports the latter as an error.
type Config map[string]any

// String returns the string setting name, or "".
func (c Config) String(name string) string {
	s, _ := c[name].(string)
	return s
}

// Bool returns the bool setting name, or false.
func (c Config) Bool(name string) bool {
	b, _ := c[name].(bool)
	return b
}

// Number returns the number setting name, or 0.
func (c Config) Number(name string) float64 {
	switch n := c[name].(type) {
	case float64:
		return n
	case float32:
		return float64(n)
	case int:
		return float64(n)
	case int8:
		return float64(n)
	case int16:
		return float64(n)
	case int32:
		return float64(n)
	case int64:
		return float64(n)
	case uint:
		return float64(n)
	case uint8:
		return float64(n)
	case uint16:
		return float64(n)
	case uint32:
		return float64(n)
	case uint64:
		return float64(n)
	}
	return 0
}

// List returns a copy of the list(string) setting name, or nil.
func (c Config) List(name string) []string {
	switch v := c[name].(type) {
	case []string:
		return slices.Clone(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	return nil
}

// Map returns a copy of the map(string) setting name, or nil. Range over
// it with slices.Sorted(maps.Keys(m)) to report errors in a stable order.
func (c Config) Map(name string) map[string]string {
	switch v := c[name].(type) {
	case map[string]string:
		return maps.Clone(v)
	case map[string]any:
		out := make(map[string]string, len(v))
		for k, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil
			}
			out[k] = s
		}
		return out
	}
	return nil
}

// Duration parses the string setting name as a Go duration ("90s",
// "1h30m", "-5m") that may start with a number of days ("7d", "1.5d",
// "1d12h"). An absent setting is 0 and no error; the error for a value
// that is not a duration is a *ConfigError naming the setting. Range
// checks (negative, zero) are the plugin's.
func (c Config) Duration(name string) (time.Duration, error) {
	v, ok := c[name]
	if !ok {
		return 0, nil
	}
	s, ok := v.(string)
	if !ok {
		return 0, &ConfigError{Field: name, Message: fmt.Sprintf("want a duration string, got %s", describeValue(v))}
	}
	d, ok := parseDuration(s)
	if !ok {
		return 0, &ConfigError{Field: name, Message: fmt.Sprintf("%q is not a duration such as \"90s\", \"1h30m\" or \"7d\"", s)}
	}
	return d, nil
}

// parseDuration is time.ParseDuration with an optional leading count of
// days: [-+]<decimal>d[<Go duration without sign>].
func parseDuration(s string) (time.Duration, bool) {
	unsigned := s
	if strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
		unsigned = s[1:]
	}
	days, rest, found := strings.Cut(unsigned, "d")
	if !found {
		d, err := time.ParseDuration(s)
		return d, err == nil
	}
	if !isDecimal(days) || strings.HasPrefix(rest, "-") || strings.HasPrefix(rest, "+") {
		return 0, false
	}
	n, err := strconv.ParseFloat(days, 64)
	if err != nil {
		return 0, false
	}
	total := n * float64(24*time.Hour)
	if rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil {
			return 0, false
		}
		total += float64(r)
	}
	if total >= math.MaxInt64 {
		return 0, false
	}
	if strings.HasPrefix(s, "-") {
		total = -total
	}
	return time.Duration(total), true
}

// isDecimal reports whether s is digits with at most one '.', and at
// least one digit.
func isDecimal(s string) bool {
	digits, dots := 0, 0
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}

// Add appends a problem with setting field, its message formatted as by
// fmt.Sprintf. A Configurer collects every problem, then returns Err:
//
//	var errs sdk.ConfigErrors
//	if !ok(domain) {
//		errs.Add("domain", "%q is not a domain name", domain)
//	}
//	…
//	if err := errs.Err(); err != nil {
//		return err
//	}
func (e *ConfigErrors) Add(field, format string, a ...any) {
	*e = append(*e, &ConfigError{Field: field, Message: fmt.Sprintf(format, a...)})
}

// Err returns e as an error, or nil if e is empty (a nil ConfigErrors
// stored in an error would not be nil).
func (e ConfigErrors) Err() error {
	if len(e) == 0 {
		return nil
	}
	return e
}
