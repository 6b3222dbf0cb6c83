package main

import (
	"context"
	"strings"
	"sync"

	"github.com/mailgate/gateway/sdk"
)

// Name and version the plugin reports at handshake. The name is the one
// operators write in plugin "<name>" { … }.
const (
	name    = "skeleton"
	version = "0.1.0"
)

// Skeleton refuses the recipients listed in its config and has no opinion
// on the others. It is the template for new plugins: copy the folder,
// rename the type, and keep the shape:
//
//   - New returns a ready, unconfigured value (main calls sdk.Serve(New())).
//   - Info says who the plugin is and what its config looks like.
//   - Configure parses the config block (config.go: read values with the
//     sdk.Config accessors, report with sdk.ConfigErrors.Add) and keeps
//     the result.
//   - One method per hook interface the plugin implements (sdk.RcptHook
//     here); the host calls the plugin only at those stages.
//   - Interface guards at the end of the file.
type Skeleton struct {
	// The host may call hooks concurrently (one call per SMTP session at
	// a time, many sessions at once), and may call Configure again on
	// reload: guard the config.
	mu   sync.RWMutex
	cfg  config
	host sdk.Host // the host's services (DNS, key-value store, logs); nil in tests
}

// New returns an unconfigured Skeleton. Until Configure it refuses nobody.
func New() *Skeleton {
	return &Skeleton{cfg: config{reject: map[string]bool{}, message: defaultMessage}}
}

// Info describes the plugin. Serve fills in ProtocolVersions and Stages
// (from the hook interfaces the type implements).
func (p *Skeleton) Info() sdk.Info {
	return sdk.Info{Name: name, Version: version, Schema: schema()}
}

// Configure receives the config block, already checked against the schema
// and with the defaults filled in by the sdk, before any hook call. Return
// sdk.ConfigErrors (errs.Err()) for bad settings; anything else is
// reported as a plugin failure.
func (p *Skeleton) Configure(ctx context.Context, m map[string]any, host sdk.Host) error {
	c, err := parseConfig(m)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.cfg, p.host = c, host
	p.mu.Unlock()
	return nil
}

// Rcpt decides one RCPT TO. A hook returns a Decision built with the sdk
// constructors (the zero Decision continues: no opinion, the next hook
// runs), Effects for changes it wants (none here), and an error only when
// it could not decide at all (the host then applies the hook's on_error).
//
// At rcpt, only Accept widens relaying: return Continue, never Accept,
// for recipients the plugin merely has no objection to.
func (p *Skeleton) Rcpt(ctx context.Context, r *sdk.Request) (sdk.Decision, sdk.Effects, error) {
	if r.Rcpt == nil {
		return sdk.ContinueDecision(), sdk.Effects{}, nil
	}
	p.mu.RLock()
	c := p.cfg
	p.mu.RUnlock()
	addr := strings.ToLower(r.Rcpt.Address.String())
	if !c.reject[addr] {
		return sdk.ContinueDecision(), sdk.Effects{}, nil
	}
	// The client sees the generic message; the reason goes to the log.
	d := sdk.RejectDecision(550, sdk.EnhancedCode{5, 7, 1}, c.message).
		WithReason("skeleton: " + addr + " is in reject")
	return d, sdk.Effects{}, nil
}

// Interface guards: the build fails if Skeleton stops implementing one.
var (
	_ sdk.Describer  = (*Skeleton)(nil)
	_ sdk.Configurer = (*Skeleton)(nil)
	_ sdk.RcptHook   = (*Skeleton)(nil)
)
