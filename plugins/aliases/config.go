package main

import (
	"strings"
	"time"

	"github.com/mailgate/gateway/plugins/internal/address"
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
	cfg := sdk.Config(sdk.Info{Schema: schema()}.ApplyDefaults(m))
	c := config{
		aliasesFile: cfg.String("aliases_file"),
		virtualFile: cfg.String("virtual_file"),
		domain:      strings.ToLower(strings.TrimSuffix(cfg.String("domain"), ".")),
		expn:        cfg.Bool("expn"),
	}
	var errs sdk.ConfigErrors
	if c.domain != "" && !address.ValidDomain(c.domain) {
		errs.Add("domain", "%q is not a domain name", c.domain)
	}
	if c.aliasesFile == "" && c.virtualFile == "" {
		errs.Add("aliases_file", "set aliases_file, virtual_file or both")
	}
	if c.aliasesFile != "" && c.domain == "" {
		errs.Add("domain", "required with aliases_file: the names of an aliases file have no domain")
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
