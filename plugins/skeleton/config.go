package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mailgate/gateway/sdk"
)

// Default values of the settings. Keep them in one place: the schema, the
// parser and the README all say the same thing.
const defaultMessage = "Recipient address rejected"

// schema is what the plugin tells the host about its config block. The
// host checks the HCL block against it (names, types, required settings)
// before any mail flows, and `gateway plugin probe` prints it. Every field
// must also be a row of the README's Configuration table
// (plugins/readme_test.go checks, through testdata/schema.json).
func schema() []sdk.ConfigField {
	return []sdk.ConfigField{
		{
			Name:        "reject",
			Type:        "list(string)",
			Default:     []string{},
			Description: "Recipient addresses to refuse (compared without regard to case).",
		},
		{
			Name:        "message",
			Type:        "string",
			Default:     defaultMessage,
			Description: "The text of the 550 5.7.1 reply to a refused recipient.",
		},
	}
}

// config is the parsed config block: settled values, ready for the hooks.
type config struct {
	reject  map[string]bool // lower-cased addresses
	message string
}

// parseConfig turns the block the host sends (values are string, float64,
// bool, []string or map[string]string, as the schema types say) into a
// config. It reports every bad setting at once, as sdk.ConfigErrors, so
// the host can show them all with file:line.
func parseConfig(m map[string]any) (config, error) {
	c := config{reject: map[string]bool{}, message: defaultMessage}
	var errs sdk.ConfigErrors
	bad := func(field, format string, a ...any) {
		errs = append(errs, &sdk.ConfigError{Field: field, Message: fmt.Sprintf(format, a...)})
	}
	known := []string{"reject", "message"}
	for _, k := range sortedKeys(m) {
		if !slices.Contains(known, k) {
			bad(k, "unknown setting; the settings are %s", strings.Join(known, ", "))
		}
	}
	if v, ok := m["reject"]; ok {
		list, ok := stringList(v)
		if !ok {
			bad("reject", "want a list of strings, got %T", v)
		}
		for _, a := range list {
			local, domain, found := strings.Cut(a, "@")
			if !found || local == "" || domain == "" {
				bad("reject", "%q is not an address (local@domain)", a)
				continue
			}
			c.reject[strings.ToLower(a)] = true
		}
	}
	if v, ok := m["message"]; ok {
		s, ok := v.(string)
		switch {
		case !ok:
			bad("message", "want a string, got %T", v)
		case s == "":
			bad("message", "must not be empty")
		default:
			// Validate the message the way the host will validate the
			// decision, so a bad one fails at configure, not per call.
			if err := sdk.RejectDecision(550, sdk.EnhancedCode{5, 7, 1}, s).Validate(sdk.StageRcpt); err != nil {
				bad("message", "not usable as a reply text: %v", err)
			} else {
				c.message = s
			}
		}
	}
	if len(errs) > 0 {
		return config{}, errs
	}
	return c, nil
}

// stringList accepts a list of strings as the host sends it ([]string), or
// as a generic decoder might ([]any of strings).
func stringList(v any) ([]string, bool) {
	switch v := v.(type) {
	case []string:
		return v, true
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

// sortedKeys returns m's keys in order, so errors come out the same way
// every time.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
