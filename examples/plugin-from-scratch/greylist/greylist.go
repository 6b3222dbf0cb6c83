package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailgate/gateway/sdk"
)

// Name and version the plugin reports at handshake.
const (
	name    = "greylist"
	version = "0.1.0"
)

// Greylist defers the first delivery attempt of every (client IP, sender,
// recipient) triple it has not seen, and lets a retry through once delay
// has passed: legitimate mail servers retry, much spam software does not.
//
// It keeps no state of its own: the first attempt of a triple is stored
// in the gateway's key-value store (sdk.Host), which survives restarts of
// the plugin and of the gateway, and forgets it after ttl.
type Greylist struct {
	mu   sync.RWMutex // the host may call Rcpt concurrently, and Configure again on reload
	cfg  config
	host sdk.Host

	now func() time.Time // the clock; time.Now but in tests
}

// New returns an unconfigured Greylist, with the default settings and no
// host: until Configure its Rcpt fails (and the host applies on_error).
func New() *Greylist {
	c, _ := parseConfig(nil)
	return &Greylist{cfg: c, now: time.Now}
}

// Info describes the plugin. sdk.Serve fills in the protocol versions and
// the stages (rcpt, from the sdk.RcptHook method).
func (g *Greylist) Info() sdk.Info {
	return sdk.Info{Name: name, Version: version, Schema: schema()}
}

// Configure parses the config block and keeps it with the host's
// services, which Rcpt needs for its key-value store.
func (g *Greylist) Configure(ctx context.Context, m map[string]any, host sdk.Host) error {
	c, err := parseConfig(m)
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.cfg, g.host = c, host
	g.mu.Unlock()
	return nil
}

// errNoHost is the error of a call before Configure.
var errNoHost = errors.New("greylist: not configured: no host to keep triples in")

// Rcpt decides one RCPT TO:
//
//   - a triple not seen within ttl: remember it, defer (451 4.7.1);
//   - seen less than delay ago: defer again, with the seconds left;
//   - seen delay or more ago: continue (no opinion: the next hook and
//     the relay policy decide). The entry is written again so a
//     correspondent who keeps sending is not greylisted after ttl.
//
// A key-value store failure is an error: the gateway then applies the
// block's on_error (greylisting usually fails open: on_error =
// "continue").
func (g *Greylist) Rcpt(ctx context.Context, r *sdk.Request) (sdk.Decision, sdk.Effects, error) {
	if r.Rcpt == nil || r.Session == nil {
		return sdk.ContinueDecision(), sdk.Effects{}, nil
	}
	g.mu.RLock()
	c, host := g.cfg, g.host
	g.mu.RUnlock()
	if host == nil {
		return sdk.Decision{}, sdk.Effects{}, errNoHost
	}

	key := tripleKey(r)
	now := g.now()
	v, ok, err := host.Durable().Get(ctx, key)
	if err != nil {
		return sdk.Decision{}, sdk.Effects{}, fmt.Errorf("greylist: read %s: %w", key, err)
	}
	first, err := strconv.ParseInt(v, 10, 64)
	if !ok || err != nil { // a new triple (or an entry this version cannot read)
		if err := host.Durable().Set(ctx, key, strconv.FormatInt(now.UnixMilli(), 10), c.ttl); err != nil {
			return sdk.Decision{}, sdk.Effects{}, fmt.Errorf("greylist: write %s: %w", key, err)
		}
		return deferral(c.delay, "greylist: new triple "+key), sdk.Effects{}, nil
	}
	if waited := now.Sub(time.UnixMilli(first)); waited < c.delay {
		return deferral(c.delay-waited, fmt.Sprintf("greylist: %s retried after %v", key, waited.Round(time.Millisecond))), sdk.Effects{}, nil
	}
	// Passed: keep the first-seen time, renew the expiry.
	if err := host.Durable().Set(ctx, key, v, c.ttl); err != nil {
		return sdk.Decision{}, sdk.Effects{}, fmt.Errorf("greylist: write %s: %w", key, err)
	}
	return sdk.ContinueDecision(), sdk.Effects{}, nil
}

// deferral is the 451 4.7.1 for a triple that must wait left longer
// (rounded up to whole seconds, at least 1).
func deferral(left time.Duration, reason string) sdk.Decision {
	secs := int64((left + time.Second - 1) / time.Second)
	secs = max(secs, 1)
	msg := fmt.Sprintf("Greylisted, try again in %d seconds", secs)
	return sdk.DeferDecision(451, sdk.EnhancedCode{4, 7, 1}, msg).WithReason(reason)
}

// tripleKey is the key-value store key of the request's triple:
// "triple/<client IP>/<sender>/<recipient>", addresses in lower case, the
// null sender as "<>". (The host keeps each plugin's keys apart.)
func tripleKey(r *sdk.Request) string {
	sender := "<>"
	if r.Txn != nil && r.Txn.Sender.String() != "" {
		sender = r.Txn.Sender.String()
	}
	return strings.ToLower("triple/" + r.Session.ClientIP + "/" + sender + "/" + r.Rcpt.Address.String())
}

// Interface guards: the build fails if Greylist stops implementing one.
var (
	_ sdk.Describer  = (*Greylist)(nil)
	_ sdk.Configurer = (*Greylist)(nil)
	_ sdk.RcptHook   = (*Greylist)(nil)
)
