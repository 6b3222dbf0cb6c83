package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/pluginhost/pluginhosttest"
)

// testPlugin is core/pluginhost's test plugin (see its main.go: rejects
// blocked@ with "<greeting>: blocked", accepts count@ with a counter kept
// in the host's KV, provides transport "testtransport").
const testPlugin = "../../core/pluginhost/testdata/testplugin"

// pluginConfig is the gateway.hcl section (for writeConfig) with the test
// plugin in the pipeline (pluginhosttest.TestPluginConfig).
func pluginConfig(bin, greeting, outdir string) string {
	return pluginhosttest.TestPluginConfig(bin, greeting, outdir)
}

// TestPlugin runs the commands' plugin wiring on one build of the test
// plugin: probe, check, and the startup errors. A plugin in a running
// gateway's pipeline is core/gateway's TestPluginPipeline.
func TestPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts processes")
	}
	bin := gatewaytest.BuildPlugin(t, testPlugin)

	t.Run("probe", func(t *testing.T) {
		code, out, errOut := runCLI(t, "plugin", "probe", bin)
		if code != 0 {
			t.Fatalf("probe: code %d, stderr %s", code, errOut)
		}
		want := `name:        test
version:     1.2.3
protocols:   2
stages:      rcpt, data
transports:  testtransport
config:
  SETTING   TYPE    REQUIRED  DEFAULT  DESCRIPTION
  greeting  string  yes       -        the reject text's prefix
  limit     number  no        10       a number
  outdir    string  no        -        where the transport writes
`
		if out != want {
			t.Errorf("probe output:\n%s\nwant:\n%s", out, want)
		}

		code, out, errOut = runCLI(t, "plugin", "probe", bin, "--stage", "rcpt", "--rcpt", "blocked@example.test",
			"--sender", "c@d.test", "-set", "greeting=Go away", "-set", "limit=3")
		if code != 0 {
			t.Fatalf("probe -stage rcpt: code %d, stderr %s", code, errOut)
		}
		if want := "\nsample rcpt request:\n  verdict: reject\n  reply:   550 5.7.1 Go away: blocked\n  reason:  limit 3\n"; !strings.HasSuffix(out, want) {
			t.Errorf("probe -stage rcpt output:\n%s\nwant it to end with:\n%s", out, want)
		}

		code, _, errOut = runCLI(t, "plugin", "probe", "-stage", "rcpt", bin)
		if code != 1 || !strings.Contains(errOut, `plugin "probe": config: greeting: required setting missing`) {
			t.Errorf("probe without the required setting: code %d, stderr %q", code, errOut)
		}
		if code, _, _ := runCLI(t, "plugin", "frob"); code != 2 {
			t.Errorf("plugin frob: code %d, want 2", code)
		}
	})

	t.Run("check", func(t *testing.T) {
		data := t.TempDir()
		good := writeConfig(t, data, pluginConfig(bin, "Blocked", t.TempDir()))
		code, out, errOut := runCLI(t, "check", "-config", good)
		want := good + ": ok (1 listeners, 1 local domains, 1 hooks, data in " + data + ")\n" +
			"  plugin.policy: test 1.2.3 (protocol 2), stages rcpt, data, transports testtransport\n"
		if code != 0 || out != want {
			t.Errorf("check: code %d, out %q, stderr %q; want 0 and %q", code, out, errOut, want)
		}

		// The config block against the plugin's schema, with file:line.
		bad := writeConfig(t, data, strings.Replace(pluginConfig(bin, "Blocked", t.TempDir()),
			"    outdir", "    colour   = \"red\"\n    outdir", 1))
		code, _, errOut = runCLI(t, "check", "-config", bad)
		src, _ := os.ReadFile(bad)
		line := 1 + strings.Count(string(src[:strings.Index(string(src), "colour")]), "\n")
		wantErr := fmt.Sprintf(`%s:%d: plugin "policy": config: colour: unknown setting; the plugin's settings are greeting, limit, outdir`, bad, line)
		if code != 1 || !strings.Contains(errOut, wantErr) {
			t.Errorf("check with an unknown setting: code %d, stderr %q; want 1 and %q", code, errOut, wantErr)
		}
	})

	t.Run("unknown route transport", func(t *testing.T) {
		cfg := strings.Replace(pluginConfig(bin, "Blocked", t.TempDir()), `transport = "testtransport"`, `transport = "webhook"`, 1)
		path := writeConfig(t, t.TempDir(), cfg)
		for _, cmd := range []string{"check", "serve"} {
			code, _, errOut := runCLI(t, cmd, "-config", path)
			want := `delivery: route "example.test": transport "webhook": no such transport (built in: smtp, lmtp, maildir; the plugins provide testtransport)`
			if code != 1 || !strings.Contains(errOut, want) {
				t.Errorf("%s: code %d, stderr %q; want 1 and %q", cmd, code, errOut, want)
			}
		}
	})

}

// TestPluginUsage: the plugin command's usage names its commands, and a
// wrong command line gets it (exit 2) before any plugin starts.
func TestPluginUsage(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string // the first line of stderr
	}{
		{nil, "usage: gateway plugin <command>"},
		{[]string{"frob"}, `gateway plugin: unknown command "frob"`},
		{[]string{"probe"}, "usage: gateway plugin probe PATH [-stage rcpt -rcpt a@b -sender c@d -set name=value …]"},
		{[]string{"probe", "a", "-stage", "rcpt", "b"}, `gateway plugin probe: one PATH only; got ["a" "b"]`},
		{[]string{"probe", "a", "-nope"}, "flag provided but not defined: -nope"},
	}
	for _, tt := range tests {
		code, out, errOut := runCLI(t, append([]string{"plugin"}, tt.args...)...)
		if first, _, _ := strings.Cut(errOut, "\n"); code != 2 || out != "" || first != tt.wantErr {
			t.Errorf("plugin %q: code %d, stdout %q, stderr %q; want 2 and %q", tt.args, code, out, errOut, tt.wantErr)
		}
	}
	if _, _, errOut := runCLI(t, "plugin"); !strings.Contains(errOut, "\n  probe PATH [flags]") {
		t.Errorf("plugin usage does not list probe:\n%s", errOut)
	}
}

// TestPluginDiesWithGateway kills a serving gateway with SIGKILL, which
// it cannot catch: its plugin processes must end too, within seconds,
// rather than run on as orphans.
func TestPluginDiesWithGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts processes")
	}
	bin := gatewaytest.BuildPlugin(t, testPlugin)
	bindir := filepath.Dir(bin)
	path := writeConfig(t, t.TempDir(), pluginConfig(bin, "Blocked", t.TempDir()))
	gw := startGateway(t, "serve", "-config", path)
	plugins, err := pluginhosttest.Processes(bindir)
	if err != nil {
		t.Fatal(err)
	}
	if len(plugins) == 0 {
		t.Fatalf("no process of %s while the gateway serves\nlog:\n%s", bin, gw.stderr)
	}
	if err := gw.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	gw.cmd.Wait()
	var left []pluginhosttest.Process
	if !eventually(5*time.Second, func() bool {
		left, _ = pluginhosttest.Processes(bindir)
		return len(left) == 0
	}) {
		for _, p := range left {
			syscall.Kill(p.PID, syscall.SIGKILL)
		}
		t.Fatalf("plugin processes %v still run 5s after the gateway was killed", left)
	}
}

// TestProbeLists runs the lists plugin at rcpt through plugin probe (it
// used to answer 451 4.3.0, "no key-value store"): its transaction's list
// is a note now, which the probe prints.
func TestProbeLists(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts a plugin")
	}
	bin := gatewaytest.BuildPlugin(t, "../../plugins/lists")
	code, out, errOut := runCLI(t, "plugin", "probe", bin, "-stage", "rcpt", "-rcpt", "ops@example.test",
		"-sender", "eve@example.org", "-set", `lists={"ops@example.test":"eve@example.org, frank"}`, "-set", "domain=example.test")
	want := "\nsample rcpt request:\n  verdict: accept\n  reason:  lists: ops@example.test expands to 2 members\n" +
		"  recipients: <eve@example.org> <frank@example.test>\n" +
		"  note plugin.probe/list = \"ops@example.test\"\n"
	if code != 0 || !strings.HasSuffix(out, want) {
		t.Errorf("probe lists: code %d, stdout:\n%s\nstderr:\n%s\nwant it to end with:\n%s", code, out, errOut, want)
	}
}
