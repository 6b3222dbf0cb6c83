package main

import (
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

// parseConfig turns the block the host sends into a config. By the time
// Configure sees the block the sdk has checked it against schema() (no
// unknown settings, every value of its declared type) and filled in the
// defaults, so parseConfig reads values with the sdk.Config accessors and
// checks only what a schema cannot say. It reports every bad setting at
// once, as sdk.ConfigErrors, so the host can show them all with file:line.
func parseConfig(m map[string]any) (config, error) {
	// Fill the defaults again (a no-op on the host's path) so a test that
	// calls Configure directly sees what the host would send.
	cfg := sdk.Config(sdk.Info{Schema: schema()}.ApplyDefaults(m))
	c := config{reject: map[string]bool{}}
	var errs sdk.ConfigErrors
	for _, a := range cfg.List("reject") {
		local, domain, found := strings.Cut(a, "@")
		if !found || local == "" || domain == "" {
			errs.Add("reject", "%q is not an address (local@domain)", a)
			continue
		}
		c.reject[strings.ToLower(a)] = true
	}
	c.message = cfg.String("message")
	if c.message == "" {
		errs.Add("message", "must not be empty")
	} else if err := sdk.RejectDecision(550, sdk.EnhancedCode{5, 7, 1}, c.message).Validate(sdk.StageRcpt); err != nil {
		// Validate the message the way the host will validate the
		// decision, so a bad one fails at configure, not per call.
		errs.Add("message", "not usable as a reply text: %v", err)
	}
	if err := errs.Err(); err != nil {
		return config{}, err
	}
	return c, nil
}
