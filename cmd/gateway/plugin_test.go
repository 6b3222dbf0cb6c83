package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// buildTestPlugin builds core/pluginhost's test plugin (see its main.go:
// rejects blocked@ with "<greeting>: blocked", accepts count@ with a
// counter kept in the host's KV, provides transport "testtransport") into
// dir.
func buildTestPlugin(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "gateway-plugin-test")
	cmd := exec.Command("go", "build", "-o", path, "../../core/pluginhost/testdata/testplugin")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build the test plugin: %v\n%s", err, out)
	}
	return path
}

// pluginConfig is a gateway.hcl section with the test plugin in the
// pipeline at rcpt and mail for example.test delivered by its transport
// into outdir.
func pluginConfig(bin, greeting, outdir string) string {
	return fmt.Sprintf(`
admin { address = "127.0.0.1:0" }
delivery {
  route "example.test" { transport = "testtransport" }
}
pipeline = ["plugin.policy"]
plugin "policy" {
  path     = %q
  timeout  = "2s"
  on_error = "defer"
  match { stage = ["rcpt"] }
  config {
    greeting = %q
    outdir   = %q
  }
}
`, bin, greeting, outdir)
}

// TestPlugin runs the gateway's plugin wiring on one build of the test
// plugin: probe, check, serve (the plugin's reject on the wire, its KV,
// its transport delivering queued mail, a reload restarting it) and the
// startup errors.
func TestPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts processes")
	}
	bin := buildTestPlugin(t, t.TempDir())

	t.Run("probe", func(t *testing.T) {
		code, out, errOut := runCLI(t, "plugin", "probe", bin)
		if code != 0 {
			t.Fatalf("probe: code %d, stderr %s", code, errOut)
		}
		want := `name:        test
version:     1.2.3
protocols:   1
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
			"  plugin.policy: test 1.2.3 (protocol 1), stages rcpt, data, transports testtransport\n"
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

	t.Run("serve", func(t *testing.T) {
		dir := t.TempDir()
		outdir := filepath.Join(dir, "out")
		if err := os.Mkdir(outdir, 0o700); err != nil {
			t.Fatal(err)
		}
		path := writeConfig(t, filepath.Join(dir, "data"), pluginConfig(bin, "Blocked by plugin", outdir))
		gw := startGateway(t, "serve", "-config", path)
		// count@ is accepted only if the plugin's KV call through the
		// host services (the spool) works; else on_error gives 451.
		smtptest.Run(t, gw.addr, `
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
		// The message is queued, then delivered by the plugin's transport.
		var files []string
		if !eventually(10*time.Second, func() bool {
			files, _ = filepath.Glob(filepath.Join(outdir, "*"))
			return len(files) == 1
		}) {
			t.Fatalf("the plugin transport wrote %v; want one message\nlog:\n%s", files, gw.stderr)
		}
		b, err := os.ReadFile(files[0])
		if err != nil || !strings.Contains(string(b), "Subject: through the plugin transport") || !strings.HasPrefix(string(b), "Received:") {
			t.Errorf("the plugin got %q, %v; want the whole message with its trace header", b, err)
		}
		if !eventually(5*time.Second, func() bool {
			return strings.Contains(gw.stderr.String(), "stored by testtransport")
		}) {
			t.Errorf("no delivery through testtransport in the log:\n%s", gw.stderr)
		}

		// A reload restarts the plugin with its new config block.
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(src), "Blocked by plugin", "Reloaded", 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, body := postReload(t, gw.adminAddr(t)); code != 200 {
			t.Fatalf("reload: %d %s\nlog:\n%s", code, body, gw.stderr)
		}
		_, blocked, _, err := rcptReplies(t.Context(), gw.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := blocked.String(), "550 5.7.1 Reloaded: blocked"; got != want {
			t.Errorf("after the reload: %q, want %q", got, want)
		}
		if !strings.Contains(gw.stderr.String(), `msg="hooks loaded" pipeline=plugin.policy`) {
			t.Errorf("no hooks loaded line in the log:\n%s", gw.stderr)
		}
	})
}
