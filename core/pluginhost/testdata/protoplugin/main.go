// Command protoplugin is a plugin built for protocol version 99, which
// this gateway does not speak: the host must refuse it with a clear
// error. It serves go-plugin directly, as an sdk of another version would.
package main

import (
	"github.com/hashicorp/go-plugin"

	"github.com/mailgate/gateway/sdk"
)

func main() {
	hs := sdk.Handshake
	hs.ProtocolVersion = 99
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  hs,
		VersionedPlugins: map[int]plugin.PluginSet{99: {}},
		GRPCServer:       plugin.DefaultGRPCServer,
	})
}
