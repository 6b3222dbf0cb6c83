package gateway_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/pluginhost/pluginhosttest"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// pluginConfig is a gateway.hcl with core/pluginhost's test plugin in the
// pipeline (pluginhosttest.TestPluginConfig).
func pluginConfig(bin, greeting, outdir string) string {
	return `
hostname = "mx.test"
shutdown_timeout = "5s"
listener "mx" { address = "127.0.0.1:0" }
domains = ["example.test"]
` + pluginhosttest.TestPluginConfig(bin, greeting, outdir)
}

// TestPluginPipeline runs a real plugin in a gateway's pipeline: its
// reject on the wire, its KV through the host services, its transport
// delivering queued mail, and a reload restarting it with its new config.
func TestPluginPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts a plugin")
	}
	dir := t.TempDir()
	bin := gatewaytest.BuildPlugin(t, "../pluginhost/testdata/testplugin")
	outdir := filepath.Join(dir, "out")
	if err := os.Mkdir(outdir, 0o700); err != nil {
		t.Fatal(err)
	}
	g := gatewaytest.Start(t, pluginConfig(bin, "Blocked by plugin", outdir))
	mx := g.Addr(t, "mx")
	// count@ is accepted only if the plugin's KV call through the host
	// services (the spool) works; else on_error gives 451.
	smtptest.Run(t, mx, `
S: 220 *
C: HELO client.test
S: 250 *
C: MAIL FROM:<a@client.test>
S: 250 *
C: RCPT TO:<blocked@example.test>
S: 550 5.7.1 Blocked by plugin: blocked
C: RCPT TO:<count@example.test>
S: 250 *
C: RCPT TO:<ok@example.test>
S: 250 *
C: DATA
S: 354 *
C: Subject: through the plugin transport
C:
C: Hello.
C: .
S: 250 *
C: QUIT
S: 221 *
`)
	// The message is queued, then delivered by the plugin's transport, which
	// reports it once the file is written (the file exists, empty, before).
	if !g.Log().Wait(10*time.Second, "stored by testtransport") {
		t.Fatalf("no delivery through testtransport in the log")
	}
	files, _ := filepath.Glob(filepath.Join(outdir, "*"))
	if len(files) != 1 {
		t.Fatalf("the plugin transport wrote %v; want one message", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil || !strings.Contains(string(b), "Subject: through the plugin transport") || !strings.HasPrefix(string(b), "Received:") {
		t.Errorf("the plugin got %q, %v; want the whole message with its trace header", b, err)
	}

	// A reload restarts the plugin with its new config block.
	editConfig(t, g.Path, "Blocked by plugin", "Reloaded")
	if code, body := postReload(t, g.Addr(t, "admin")); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	_, blocked, _, err := rcptReplies(t.Context(), mx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := blocked.String(), "550 5.7.1 Reloaded: blocked"; got != want {
		t.Errorf("after the reload: %q, want %q", got, want)
	}
	if !strings.Contains(g.Log().String(), `msg="hooks loaded" part=hook pipeline=plugin.policy`) {
		t.Errorf("no hooks loaded line in the log")
	}
}
