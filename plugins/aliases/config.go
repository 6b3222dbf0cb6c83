package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mailgate/gateway/sdk"
)

const defaultReloadInterval = "10s"

func schema() []sdk.ConfigField {
	return []sdk.ConfigField{
		{Name: "aliases_file", Type: "string",
			Description: "A Postfix aliases(5) file: `name: target, target`, for the addresses of `domain`."},
		{Name: "virtual_file", Type: "string",
			Description: "A Postfix virtual(5) file: `address target, target` and `@domain target` catch-alls."},
		{Name: "domain", Type: "string",
			Description: "The domain of the names in aliases_file, also given to targets without @ (required with aliases_file)."},
		{Name: "reload_interval", Type: "string", Default: defaultReloadInterval,
			Description: "How often, at most, a call checks whether the files changed (mtime or size) and re-reads them; \"0s\" never does."},
		{Name: "expn", Type: "bool", Default: false,
			Description: "Answer EXPN for alias names with their targets."},
	}
}

// config is the parsed config block.
type config struct {
	aliasesFile string
	virtualFile string
	domain      string // lower case, "" when not set
	reload      time.Duration
	expn        bool
}

func parseConfig(m map[string]any) (config, error) {
	c := config{}
	var errs sdk.ConfigErrors
	bad := func(field, format string, a ...any) {
		errs = append(errs, &sdk.ConfigError{Field: field, Message: fmt.Sprintf(format, a...)})
	}
	var known []string
	for _, f := range schema() {
		known = append(known, f.Name)
	}
	for _, k := range sortedKeys(m) {
		if !slices.Contains(known, k) {
			bad(k, "unknown setting; the settings are %s", strings.Join(known, ", "))
		}
	}
	str := func(name string) string {
		v, ok := m[name]
		if !ok {
			return ""
		}
		s, ok := v.(string)
		if !ok {
			bad(name, "want a string, got %T", v)
		}
		return s
	}
	c.aliasesFile = str("aliases_file")
	c.virtualFile = str("virtual_file")
	c.domain = strings.ToLower(strings.TrimSuffix(str("domain"), "."))
	if c.domain != "" && !validDomain(c.domain) {
		bad("domain", "%q is not a domain name", c.domain)
	}
	if c.aliasesFile == "" && c.virtualFile == "" {
		bad("aliases_file", "set aliases_file, virtual_file or both")
	}
	if c.aliasesFile != "" && c.domain == "" {
		bad("domain", "required with aliases_file: the names of an aliases file have no domain")
	}
	interval := defaultReloadInterval
	if _, ok := m["reload_interval"]; ok {
		interval = str("reload_interval")
	}
	if d, err := time.ParseDuration(interval); err != nil || d < 0 {
		bad("reload_interval", "want a duration such as \"10s\" or \"0s\", got %q", interval)
	} else {
		c.reload = d
	}
	if v, ok := m["expn"]; ok {
		b, ok := v.(bool)
		if !ok {
			bad("expn", "want a bool, got %T", v)
		}
		c.expn = b
	}
	if len(errs) > 0 {
		return config{}, errs
	}
	return c, nil
}

// validDomain reports whether s looks like a domain name: labels of
// letters, digits, '-' and '_' (or UTF-8), separated by dots.
func validDomain(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if r <= ' ' || r == '@' || r == ',' || r == '"' || r == '\\' || r == 0x7f {
				return false
			}
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
