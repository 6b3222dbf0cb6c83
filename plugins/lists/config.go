package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mailgate/gateway/sdk"
)

const (
	defaultPolicy         = PostersMembers
	defaultReloadInterval = "10s"
)

// Who may post to a list.
const (
	PostersMembers   = "members"   // the members and the owner
	PostersAnyone    = "anyone"    // every sender
	PostersModerated = "moderated" // the owner only; others are refused
)

var posterPolicies = []string{PostersMembers, PostersAnyone, PostersModerated}

func schema() []sdk.ConfigField {
	return []sdk.ConfigField{
		{Name: "lists_dir", Type: "string",
			Description: "A folder of list files, one list a file (see List files)."},
		{Name: "lists", Type: "map(string)",
			Description: "Lists given inline: list address = comma-separated members."},
		{Name: "domain", Type: "string",
			Description: "The domain of `<name>.list` files without `# address:`, and of members without @."},
		{Name: "policy_default", Type: "string", Default: defaultPolicy,
			Description: "Who may post to a list that does not say (`# posters:`): members, anyone or moderated."},
		{Name: "reload_interval", Type: "string", Default: defaultReloadInterval,
			Description: "How often, at most, a call checks lists_dir for changes and re-reads it; \"0s\" never does."},
		{Name: "expn", Type: "bool", Default: false,
			Description: "Answer EXPN of a list address with its members."},
	}
}

type config struct {
	dir    string
	inline map[string]string
	domain string
	policy string
	reload time.Duration
	expn   bool
}

func parseConfig(m map[string]any) (config, error) {
	c := config{policy: defaultPolicy}
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
	str := func(name, def string) string {
		v, ok := m[name]
		if !ok {
			return def
		}
		s, ok := v.(string)
		if !ok {
			bad(name, "want a string, got %T", v)
		}
		return s
	}
	c.dir = str("lists_dir", "")
	c.domain = strings.ToLower(strings.TrimSuffix(str("domain", ""), "."))
	if c.domain != "" && !validDomain(c.domain) {
		bad("domain", "%q is not a domain name", c.domain)
	}
	if v, ok := m["lists"]; ok {
		inline, ok := stringMap(v)
		if !ok {
			bad("lists", "want a map of strings, got %T", v)
		}
		c.inline = inline
	}
	if c.dir == "" && len(c.inline) == 0 {
		bad("lists_dir", "set lists_dir, lists or both")
	}
	c.policy = str("policy_default", defaultPolicy)
	if !slices.Contains(posterPolicies, c.policy) {
		bad("policy_default", "want one of %s, got %q", strings.Join(posterPolicies, ", "), c.policy)
	}
	interval := str("reload_interval", defaultReloadInterval)
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

// stringMap accepts a map of strings as the host sends it, or as a
// generic decoder might (map[string]any of strings).
func stringMap(v any) (map[string]string, bool) {
	switch v := v.(type) {
	case map[string]string:
		return v, true
	case map[string]any:
		out := make(map[string]string, len(v))
		for k, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out[k] = s
		}
		return out, true
	}
	return nil, false
}

func validDomain(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if r <= ' ' || r == '@' || r == ',' || r == '"' || r == '\\' || r == '<' || r == '>' || r == 0x7f {
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
