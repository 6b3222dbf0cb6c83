package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTimerSlackWanted(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"", time.Millisecond, false},
		{"0", 0, false},
		{"250us", 250 * time.Microsecond, false},
		{"2ms", 2 * time.Millisecond, false},
		{"1s", time.Second, false},
		{"2s", 0, true},
		{"-1ms", 0, true},
		{"1000", 0, true}, // no unit
		{"fast", 0, true},
	} {
		got, err := timerSlackWanted(tc.in)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("timerSlackWanted(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// slacks returns the timer slack of each thread of process pid, in ns.
func slacks(t *testing.T, pid int) []int {
	t.Helper()
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*")
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	var out []int
	for _, task := range tasks {
		// a thread's own file is /proc/<tid>/timerslack_ns
		b, err := os.ReadFile("/proc/" + filepath.Base(task) + "/timerslack_ns")
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func ownSlack(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/timerslack_ns")
	if err != nil {
		t.Skipf("no timer slack here: %v", err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// The servers run with GATEWAY_TIMER_SLACK's slack on every thread,
// sysmon's included (1 ms unless set), by an exec that keeps the PID; 0
// and a bad value keep the kernel's (the parent's), the latter with a
// warning.
func TestServersRunWithTimerSlack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	kernels := ownSlack(t)
	for _, tc := range []struct {
		env, warning string
		want         int
	}{
		{"", "", 1_000_000},
		{"250us", "", 250_000},
		{"0", "", kernels},
		{"soon", `warning: GATEWAY_TIMER_SLACK="soon": want a duration`, kernels},
	} {
		t.Run("env="+tc.env, func(t *testing.T) {
			t.Setenv(timerSlackEnv, tc.env)
			c := startGateway(t, "sink", "--listen", "127.0.0.1:0")
			for i, s := range slacks(t, c.cmd.Process.Pid) {
				if s != tc.want {
					t.Errorf("thread %d of %d: slack %d ns, want %d", i, c.cmd.Process.Pid, s, tc.want)
				}
			}
			if got := c.stderr.String(); !strings.Contains(got, tc.warning) || (tc.warning == "" && strings.Contains(got, "warning")) {
				t.Errorf("stderr %q, want the warning %q", got, tc.warning)
			}
		})
	}
}
