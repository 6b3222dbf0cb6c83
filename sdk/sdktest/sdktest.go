// Package sdktest is the plugin author's test kit: Start runs a plugin
// in-process over the real gRPC path (go-plugin's TestPluginGRPCConn, no
// binary to build), Host is a fake of the gateway's services, and
// Conformance is the suite every shipped plugin runs in its tests.
package sdktest

import (
	"io"
	"testing"

	"github.com/hashicorp/go-plugin"
	"github.com/mailgate/gateway/sdk"
)

// Start serves p in-process and returns the host's handle on it, exactly as
// the gateway would dispense it. The connection closes when the test ends.
// Configure it with a Host (NewHost) before other calls, as the gateway
// does.
func Start(t testing.TB, p sdk.Describer) sdk.Remote {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, sdk.ServePlugins(p)[sdk.ProtocolVersion])
	// Close asks the server to stop (go-plugin's controller Shutdown); a
	// second Stop from here would race with it inside go-plugin.
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(sdk.PluginName)
	if err != nil {
		t.Fatalf("sdktest: dispense %s: %v", sdk.PluginName, err)
	}
	r, ok := raw.(sdk.Remote)
	if !ok {
		t.Fatalf("sdktest: dispensed %T, not an sdk.Remote", raw)
	}
	// The Host service Configure serves to the plugin stops when the
	// plugin's process exits, which an in-process plugin never does: stop
	// it (and remove its socket) first, before the connection closes.
	if c, ok := r.(io.Closer); ok {
		t.Cleanup(func() { _ = c.Close() })
	}
	return r
}
