package main

import (
	"slices"
	"strings"
	"time"

	"github.com/mailgate/gateway/plugins/internal/address"
	"github.com/mailgate/gateway/plugins/internal/expn"
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
	return append([]sdk.ConfigField{
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
	}, expn.Fields("EXPN of a list with its members and VRFY of a list with its address")...)
}

type config struct {
	dir    string
	inline map[string]string
	domain string
	policy string
	reload time.Duration
	expn   expn.Policy // who may use EXPN and VRFY
}

func parseConfig(m map[string]any) (config, error) {
	cfg := sdk.Config(sdk.Info{Schema: schema()}.ApplyDefaults(m))
	c := config{
		dir:    cfg.String("lists_dir"),
		inline: cfg.Map("lists"),
		domain: strings.ToLower(strings.TrimSuffix(cfg.String("domain"), ".")),
		policy: cfg.String("policy_default"),
	}
	var errs sdk.ConfigErrors
	c.expn = expn.Parse(cfg, &errs)
	if c.domain != "" && !address.ValidDomain(c.domain) {
		errs.Add("domain", "%q is not a domain name", c.domain)
	}
	if c.dir == "" && len(c.inline) == 0 {
		errs.Add("lists_dir", "set lists_dir, lists or both")
	}
	if !slices.Contains(posterPolicies, c.policy) {
		errs.Add("policy_default", "want one of %s, got %q", strings.Join(posterPolicies, ", "), c.policy)
	}
	if d, err := cfg.Duration("reload_interval"); err != nil || d < 0 {
		errs.Add("reload_interval", "want a duration such as \"10s\" or \"0s\", got %q", cfg.String("reload_interval"))
	} else {
		c.reload = d
	}
	if err := errs.Err(); err != nil {
		return config{}, err
	}
	return c, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
