package lua_test

import (
	"context"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
)

// deferReply is what on_error = "defer" answers.
const deferReply = "451 4.3.0 Temporary local problem, please try again later"

// startBomb runs a whole gateway (gatewaytest) whose lua block "bomb"
// (on_error defer) runs onRcpt as the body of on_rcpt, with the settings
// of the lua block and more of the gateway.
func startBomb(t *testing.T, onRcpt, luaSettings, gatewaySettings string) (*gatewaytest.Gateway, string) {
	t.Helper()
	path := gatewaytest.WriteConfig(t, gatewaytest.DeadRoute+`
hostname = "mx.example.test"
domains  = ["example.test"]
listener "mx" { address = "127.0.0.1:0" }
`+gatewaySettings+`
lua "bomb" {
  path = "bomb.lua"
  `+luaSettings+`
}
`)
	script := "function on_rcpt(ctx)\n" + onRcpt + "\nend\n"
	if err := os.WriteFile(filepath.Join(filepath.Dir(path), "bomb.lua"), []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	g := gatewaytest.StartFile(t, path)
	return g, g.Addr(t, "mx")
}

// openTxn opens a session and sends EHLO and MAIL FROM.
func openTxn(addr string) (*textproto.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(time.Minute))
	c := textproto.NewConn(conn)
	if _, _, err := c.ReadResponse(220); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	for _, cmd := range []string{"EHLO client.example.org", "MAIL FROM:<a@example.org>"} {
		if err := c.PrintfLine("%s", cmd); err != nil {
			c.Close()
			return nil, err
		}
		if _, _, err := c.ReadResponse(250); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", cmd, err)
		}
	}
	return c, nil
}

// rcpt opens a session, sends one recipient and returns the reply to RCPT
// and how long it took.
func rcpt(addr string) (string, time.Duration, error) {
	c, err := openTxn(addr)
	if err != nil {
		return "", 0, err
	}
	defer c.Close()
	start := time.Now()
	if err := c.PrintfLine("RCPT TO:<b@example.test>"); err != nil {
		return "", 0, err
	}
	line, err := c.ReadLine()
	return line, time.Since(start), err
}

// TestServerBombs sends a recipient to a gateway whose rcpt hook runs a
// bomb of the issue, from several sessions at once: each must get the
// on_error reply, by the hook's deadline of 1s (+50ms) at worst, the
// process must grow by no more than about max_memory per session, and
// its memory must come back once the sessions are done. (A reply later
// than that passes if the process used little CPU after the deadline: the
// machine was busy, the gateway was not working past its deadline.)
func TestServerBombs(t *testing.T) {
	tests := []struct {
		name      string
		onRcpt    string
		maxMemory int64 // MiB; 0 for the default
		timeout   time.Duration
		sessions  int
	}{
		{"doubling", `local s = "x" for i = 1, 40 do s = s .. s end`, 16, time.Second, 4},
		{"doubling, the default max_memory", `local s = "x" for i = 1, 40 do s = s .. s end`, 0, time.Second, 1},
		{"table.concat of 1200 MiB", `local t, x = {}, string.rep("x", 8 * 2^20) for i = 1, 150 do t[i] = x end return table.concat(t)`, 16, time.Second, 4},
		{"1200 MiB in one instruction", `local x = string.rep("x", 8 * 2^20) local s = ` + strings.Repeat("x .. ", 149) + "x", 16, time.Second, 4},
		{"table of strings", `local t = {} for i = 1, 1e9 do t[#t + 1] = "a string of some length " .. i end`, 16, 10 * time.Second, 4},
		{"string.find", `string.find(string.rep("a", 30000), ".-.-.-b")`, 0, time.Second, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			settings, limit := fmt.Sprintf("timeout = %q", tt.timeout.String()), int64(64*mib)
			if tt.maxMemory > 0 {
				settings += fmt.Sprintf("\nmax_memory = \"%dMB\"", tt.maxMemory)
				limit = tt.maxMemory * mib
			}
			g, addr := startBomb(t, tt.onRcpt, settings, "")
			resetPeak(t)
			before := procStatus(t, "VmRSS")
			sendAll(t, addr, tt.sessions, tt.timeout)
			grew := procStatus(t, "VmHWM") - before
			if bound := int64(tt.sessions) * limit * 3 / 2; grew > bound && !raceEnabled {
				t.Errorf("the process grew by %d MiB at its peak, more than %d MiB", grew/mib, bound/mib)
			}
			debug.FreeOSMemory()
			after := procStatus(t, "VmRSS")
			if after > before+16*mib && !raceEnabled {
				t.Errorf("RSS %d MiB after the sessions, %d MiB before", after/mib, before/mib)
			}
			t.Logf("RSS %d MiB before, peak +%d MiB, %d MiB after", before/mib, grew/mib, after/mib)
			if !strings.Contains(g.Log().String(), "hook failed") {
				t.Errorf("no hook failure logged")
			}
		})
	}
}

// sendAll sends a recipient from n sessions at once, each of which must
// get deferReply by the hook's deadline and 50ms, or have the process use
// little CPU after the deadline: 50ms a session and 450ms for the
// instruction that was running and the GC after it (that took 307ms
// under the race detector on a loaded machine; a hook that ran on
// would take seconds).
func sendAll(t *testing.T, addr string, n int, deadline time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	late := cpuAfter(ctx)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		worst time.Duration
	)
	for range n {
		wg.Go(func() {
			reply, took, err := rcpt(addr)
			mu.Lock()
			worst = max(worst, took)
			mu.Unlock()
			if err != nil {
				t.Errorf("session: %v", err)
			} else if reply != deferReply {
				t.Errorf("RCPT: %q, want %q", reply, deferReply)
			}
		})
	}
	wg.Wait()
	cpuLate := late()
	if worst > deadline+50*time.Millisecond && cpuLate > time.Duration(n)*50*time.Millisecond+450*time.Millisecond {
		t.Errorf("the slowest RCPT took %v, and the process worked %v past the hook's deadline of %v", worst, cpuLate, deadline)
	}
	t.Logf("the slowest of %d replies after %v; CPU past the deadline %v", n, worst.Round(time.Millisecond), cpuLate.Round(time.Millisecond))
}

// TestServerStopsDuringAStuckHook stops a gateway while its rcpt hook
// (timeout 1h) runs a pattern search that never ends on its own: the stop
// must take no more than shutdown_timeout (1s) and a little, the forced
// end of the session cancelling the hook's call.
func TestServerStopsDuringAStuckHook(t *testing.T) {
	const grace = time.Second
	var stopping time.Time
	t.Run("serve", func(t *testing.T) {
		_, addr := startBomb(t, `while true do string.find(string.rep("a", 30000), ".-.-.-b") end`,
			`timeout = "1h"`, fmt.Sprintf("shutdown_timeout = %q", grace.String()))
		c, err := openTxn(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		// Cleanups run last first: this one, before the gateway stops.
		t.Cleanup(func() { stopping = time.Now() })
		if err := c.PrintfLine("RCPT TO:<b@example.test>"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // into the hook
	})
	if stopping.IsZero() {
		t.Fatal("the gateway did not start")
	}
	took := time.Since(stopping)
	if took > grace+500*time.Millisecond {
		t.Errorf("the gateway took %v to stop, shutdown_timeout is %v", took, grace)
	}
	t.Logf("stopped in %v", took.Round(time.Millisecond))
}
