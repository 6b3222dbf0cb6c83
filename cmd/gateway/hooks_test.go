package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// The hook pipeline's building and reloading are core/gateway's and tested
// there in-process; these tests check what only the command does: SIGHUP,
// and serve and check refusing a broken script.

// policyScript rejects RCPT to blocked@example.test with a text that names
// its version.
func policyScript(version int) string {
	return fmt.Sprintf(`function on_rcpt(ctx)
  if ctx.txn.rcpt == "blocked@example.test" then
    return gw.reject(550, "5.1.1", "Blocked by version %d")
  end
end
`, version)
}

// brokenScript does not compile: its error is on line 3.
const brokenScript = "-- broken on purpose\nfunction on_rcpt(ctx)\n  local x = = 1\nend\n"

// hookConfig writes a gateway.hcl with policy.lua (holding script) as its
// one hook, and returns the paths of both.
func hookConfig(t *testing.T, script string) (config, scriptPath string) {
	t.Helper()
	dir := t.TempDir()
	scriptPath = filepath.Join(dir, "policy.lua")
	writeFile(t, scriptPath, script)
	config = writeConfig(t, filepath.Join(dir, "data"), fmt.Sprintf(`
delivery {
  route "example.test" {
    transport = "maildir"
    path      = %q
  }
}
lua "policy" { path = %q }
`, filepath.Join(dir, "mail"), scriptPath))
	return config, scriptPath
}

func writeFile(t *testing.T, path, src string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// blockedReply is the transcript of a session whose RCPT the script of the
// given version rejects.
func blockedReply(version int) string {
	return fmt.Sprintf(`
S: 220 *
C: HELO client.test
S: 250 *
C: MAIL FROM:<a@client.test>
S: 250 *
C: RCPT TO:<blocked@example.test>
S: 550 5.1.1 Blocked by version %d
C: QUIT
S: 221 *
`, version)
}

// TestHookReloadSIGHUP reloads a gateway process with SIGHUP.
func TestHookReloadSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	config, script := hookConfig(t, policyScript(1))
	gw := startGateway(t, "serve", "-config", config)
	smtptest.Run(t, gw.addr, blockedReply(1))

	writeFile(t, script, policyScript(2))
	if err := gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !eventually(10*time.Second, func() bool {
		return strings.Contains(gw.stderr.String(), "reloaded the hook pipeline")
	}) {
		t.Fatalf("no reload after SIGHUP; output:\n%s", gw.stderr.String())
	}
	smtptest.Run(t, gw.addr, blockedReply(2))

	writeFile(t, script, brokenScript)
	gw.cmd.Process.Signal(syscall.SIGHUP)
	if !eventually(10*time.Second, func() bool {
		return strings.Contains(gw.stderr.String(), "reload failed; the running hooks stay")
	}) {
		t.Fatalf("no failed reload after SIGHUP with a broken script; output:\n%s", gw.stderr.String())
	}
	if !strings.Contains(gw.stderr.String(), script+":3:") {
		t.Errorf("the failed reload's log does not name %s:3:\n%s", script, gw.stderr.String())
	}
	smtptest.Run(t, gw.addr, blockedReply(2))

	// The process still stops cleanly.
	gw.cmd.Process.Signal(os.Interrupt)
	if err := gw.cmd.Wait(); err != nil {
		t.Errorf("gateway exit: %v; output:\n%s", err, gw.stderr.String())
	}
}

// TestServeRefusesBrokenScript: serve does not start on a script that does
// not compile, and says where.
func TestServeRefusesBrokenScript(t *testing.T) {
	config, script := hookConfig(t, brokenScript)
	code, _, errOut := runCLI(t, "serve", "-config", config)
	if want := script + ":3:"; code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("serve with a broken script: code %d, stderr %q; want 1 naming %s", code, errOut, want)
	}
}

func TestCheckScripts(t *testing.T) {
	config, script := hookConfig(t, policyScript(1))
	code, out, errOut := runCLI(t, "check", "-config", config)
	if code != 0 || !strings.Contains(out, ": ok (1 listeners, 1 local domains, 1 hooks, data in ") {
		t.Fatalf("check: code %d, out %q, err %q", code, out, errOut)
	}

	writeFile(t, script, brokenScript)
	code, _, errOut = runCLI(t, "check", "-config", config)
	if want := script + ":3:"; code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("check with a broken script: code %d, stderr %q; want 1 naming %s", code, errOut, want)
	}
}

// TestCheckReportsEveryProblem: a wrong value in the file, a script that
// does not compile and a route to a transport nobody provides are all
// reported, each with its file:line, by one run of check.
func TestCheckReportsEveryProblem(t *testing.T) {
	config, script := hookConfig(t, brokenScript)
	src, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(src), `shutdown_timeout = "5s"`, `shutdown_timeout = "soon"`, 1)
	bad = strings.Replace(bad, "delivery {", "delivery {\n  route \"x.test\" { transport = \"nosuch\" }", 1)
	writeFile(t, config, bad)
	code, _, errOut := runCLI(t, "check", "-config", config)
	lineOf := func(s string) int { return 1 + strings.Count(bad[:strings.Index(bad, s)], "\n") }
	for _, want := range []string{
		fmt.Sprintf("%s:%d:", config, lineOf(`"soon"`)),
		script + ":3:",
		fmt.Sprintf(`%s:%d: delivery: route "x.test": transport "nosuch": no such transport`, config, lineOf(`"nosuch"`)),
	} {
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("check: code %d, stderr %q; want 1 naming %s", code, errOut, want)
		}
	}
}
