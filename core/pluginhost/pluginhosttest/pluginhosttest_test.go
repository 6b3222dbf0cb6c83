package pluginhosttest_test

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/mailgate/gateway/core/pluginhost/pluginhosttest"
)

// The check finds a process started from an executable in the folder (the
// known-bad fixture: a copy of sleep left running), and not once it ended.
func TestProcessesFindsALeftover(t *testing.T) {
	src, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep executable")
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "gateway-plugin-sleep")
	copyFile(t, src, exe)
	cmd := exec.Command(exe, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	got, err := pluginhosttest.Processes(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, pluginhosttest.Process{PID: cmd.Process.Pid, Exe: exe}) {
		t.Errorf("Processes(%s) = %v; want pid %d", dir, got, cmd.Process.Pid)
	}
	if other, _ := pluginhosttest.Processes(t.TempDir()); len(other) != 0 {
		t.Errorf("Processes of an empty folder = %v", other)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if got, _ := pluginhosttest.Processes(dir); len(got) != 0 {
		t.Errorf("after the kill: %v, want none", got)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
