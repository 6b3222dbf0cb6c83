package main

import (
	"math"
	"strings"
	"time"

	"github.com/mailgate/gateway/plugins/internal/address"
	"github.com/mailgate/gateway/plugins/internal/expn"
	"github.com/mailgate/gateway/plugins/internal/srs"
	"github.com/mailgate/gateway/sdk"
)

const (
	defaultReloadInterval = "10s"
	defaultSRSMaxAge      = 21
)

func schema() []sdk.ConfigField {
	return append([]sdk.ConfigField{
		{Name: "aliases_file", Type: "string",
			Description: "A Postfix aliases(5) file: `name: target, target`, for the addresses of `domain`."},
		{Name: "virtual_file", Type: "string",
			Description: "A Postfix virtual(5) file: `address target, target` and `@domain target` catch-alls."},
		{Name: "domain", Type: "string",
			Description: "The domain of the names in aliases_file, also given to targets without @ (required with aliases_file)."},
		{Name: "reload_interval", Type: "string", Default: defaultReloadInterval,
			Description: "How often, at most, a call checks whether the files changed (mtime or size) and re-reads them; \"0s\" never does."},
		{Name: "local_domains", Type: "list(string)",
			Description: "Where forwarding needs no SRS; default: `domain` and the domains of the virtual_file entries."},
		{Name: "srs_domain", Type: "string",
			Description: "The domain of the SRS addresses given to senders of mail forwarded out of local_domains; none: no SRS."},
		{Name: "srs_secret", Type: "string",
			Description: "Keys the SRS hash (required with srs_domain); the same secret as scripts/aliases.lua's makes the same addresses."},
		{Name: "srs_max_age", Type: "number", Default: float64(defaultSRSMaxAge),
			Description: "Days an SRS address stays valid for bounces."},
	}, expn.Fields("EXPN of an alias with its targets")...)
}

// config is the parsed config block.
type config struct {
	aliasesFile string
	virtualFile string
	domain      string // lower case, "" when not set
	reload      time.Duration
	local       map[string]bool // local_domains, lower case; nil: derived from the files
	srs         *srs.Rewriter   // nil: no SRS
	expn        expn.Policy     // who may use EXPN
}

func parseConfig(m map[string]any) (config, error) {
	cfg := sdk.Config(sdk.Info{Schema: schema()}.ApplyDefaults(m))
	c := config{
		aliasesFile: cfg.String("aliases_file"),
		virtualFile: cfg.String("virtual_file"),
		domain:      domainName(cfg.String("domain")),
	}
	var errs sdk.ConfigErrors
	c.expn = expn.Parse(cfg, &errs)
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
	for _, d := range cfg.List("local_domains") {
		if c.local == nil {
			c.local = map[string]bool{}
		}
		if d = domainName(d); !address.ValidDomain(d) {
			errs.Add("local_domains", "%q is not a domain name", d)
		}
		c.local[d] = true
	}
	c.srs = parseSRS(cfg, &errs)
	if err := errs.Err(); err != nil {
		return config{}, err
	}
	return c, nil
}

// parseSRS reads the srs_ settings: nil without srs_domain.
func parseSRS(cfg sdk.Config, errs *sdk.ConfigErrors) *srs.Rewriter {
	domain, secret := domainName(cfg.String("srs_domain")), cfg.String("srs_secret")
	age := cfg.Number("srs_max_age")
	if age < 0 || age != math.Trunc(age) || age > 1000 {
		errs.Add("srs_max_age", "want a whole number of days from 0 to 1000, got %v", age)
	}
	switch {
	case domain == "" && secret != "":
		errs.Add("srs_domain", "required with srs_secret")
	case domain == "":
		return nil
	case !address.ValidDomain(domain):
		errs.Add("srs_domain", "%q is not a domain name", domain)
	case secret == "":
		errs.Add("srs_secret", "required with srs_domain")
	}
	return &srs.Rewriter{Domain: domain, Secret: secret, MaxAge: int(age)}
}

// domainName is a domain setting in lower case, without a final dot.
func domainName(s string) string {
	return strings.ToLower(strings.TrimSuffix(s, "."))
}
