package pluginhost

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mailgate/gateway/sdk"
)

// ConfigError is a plugin's config block that its schema (or its
// Configure) refused. Its text has one line per problem:
//
//	file:line: plugin "name": config: field: message
//
// where line is the setting's own line when it is in the block, else the
// block's.
type ConfigError struct {
	Plugin string // the block's label
	File   string
	Line   int            // the config block's (or the plugin block's) line
	Lines  map[string]int // the line of each setting given
	Errs   sdk.ConfigErrors
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	for i, ce := range e.Errs {
		if i > 0 {
			b.WriteByte('\n')
		}
		line := e.Line
		if l, ok := e.Lines[ce.Field]; ok && l > 0 {
			line = l
		}
		if e.File != "" {
			fmt.Fprintf(&b, "%s:%d: ", e.File, line)
		}
		fmt.Fprintf(&b, "plugin %q: config: %s: %s", e.Plugin, ce.Field, ce.Message)
	}
	return b.String()
}

// Unwrap returns the sdk.ConfigErrors.
func (e *ConfigError) Unwrap() error { return e.Errs }

// configError reports errs about p's config block; an unknown setting's
// message lists the settings the plugin has.
func (p *Plugin) configError(info sdk.Info, errs sdk.ConfigErrors) error {
	names := make([]string, len(info.Schema))
	for i, f := range info.Schema {
		names[i] = f.Name
	}
	slices.Sort(names)
	out := make(sdk.ConfigErrors, len(errs))
	for i, e := range errs {
		c := *e
		if c.Message == "unknown setting" {
			if len(names) == 0 {
				c.Message += "; the plugin takes none"
			} else {
				c.Message += "; the plugin's settings are " + strings.Join(names, ", ")
			}
		}
		if c.Field == "" {
			c.Field = "(block)"
		}
		out[i] = &c
	}
	return &ConfigError{Plugin: p.opt.Name, File: p.opt.ConfigFile, Line: p.opt.ConfigLine, Lines: p.opt.ConfigLines, Errs: out}
}
