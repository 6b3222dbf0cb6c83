package sdk

import (
	"context"

	"github.com/hashicorp/go-plugin"
)

// Handshake is the go-plugin handshake shared by the gateway and its
// plugins. The cookie is a usability check (a plugin binary run by hand
// says so), not security; ProtocolVersion is negotiated through
// VersionedPlugins.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "GATEWAY_PLUGIN",
	MagicCookieValue: "d7c1b3e0-mail-gateway-plugin",
}

// PluginName is the name plugins are dispensed under in go-plugin.
const PluginName = "gateway"

// Serve runs p as a plugin process; call it from main and nothing else.
// p implements Describer and any of the hook interfaces, Configurer and
// Transport. It does not return.
func Serve(p Describer) { serve(p) }

// VersionedPlugins is the go-plugin plugin map for every protocol version
// this sdk speaks; the host passes it in plugin.ClientConfig.
func VersionedPlugins() map[int]plugin.PluginSet { return versionedPlugins(nil) }

// Remote is the host's handle on a running plugin, as dispensed by
// go-plugin (Dispense(PluginName).(Remote)). Every call honours ctx's
// deadline across the process boundary.
type Remote interface {
	Info(ctx context.Context) (Info, error)
	// Configure sends the config block and the host's services. Problems
	// with settings come back as ConfigErrors (errors.As).
	Configure(ctx context.Context, config map[string]any, host Host) error
	// Handle runs one hook call; notifications return the zero Decision.
	Handle(ctx context.Context, r *Request) (Decision, Effects, error)
	// Deliver hands a message to one of the plugin's transports.
	Deliver(ctx context.Context, d *Delivery) ([]DeliveryResult, error)
}

// ConfigErrors is the error Configure returns for bad settings.
type ConfigErrors []*ConfigError

func (e ConfigErrors) Error() string {
	if len(e) == 0 {
		return "config: no errors"
	}
	msg := e[0].Error()
	if len(e) > 1 {
		msg += " (and more)"
	}
	return msg
}
