// Package pluginhosttest keeps the tests of packages that start plugin
// processes from leaving any behind: Main runs a package's tests with
// TMPDIR set to a folder of its own (so every plugin a test builds lives
// under it) and fails the run if a process started from an executable in
// that folder is still alive afterwards.
package pluginhosttest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Process is a live process.
type Process struct {
	PID int
	Exe string // as /proc/<pid>/exe reads, " (deleted)" included
}

// Processes returns the live processes (zombies excluded: their exe does
// not read) whose executable lies under dir. It reads /proc, so it finds
// nothing where there is none.
func Processes(dir string) ([]Process, error) {
	dir = filepath.Clean(dir) + string(filepath.Separator)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("pluginhosttest: %w", err)
	}
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.HasPrefix(exe, dir) {
			out = append(out, Process{PID: pid, Exe: exe})
		}
	}
	return out, nil
}

// Main runs m as TestMain should (os.Exit(pluginhosttest.Main(m))), with
// TMPDIR set to a new folder. A process whose executable is under it and
// that is still alive 5s after the tests is a plugin that outlived its
// test: Main names it, kills it and returns 1.
func Main(m *testing.M) int {
	dir, err := os.MkdirTemp("", "plugintests")
	if err != nil {
		fmt.Fprintln(os.Stderr, "pluginhosttest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	os.Setenv("TMPDIR", dir)
	code := m.Run()
	if left := waitGone(dir, 5*time.Second); len(left) > 0 {
		for _, p := range left {
			fmt.Fprintf(os.Stderr, "pluginhosttest: process %d (%s) outlived the tests; killing it\n", p.PID, p.Exe)
			syscall.Kill(p.PID, syscall.SIGKILL)
		}
		fmt.Println("FAIL: the tests left plugin processes behind")
		code = 1
	}
	return code
}

// waitGone waits up to d for the processes under dir to end and returns
// those still alive.
func waitGone(dir string, d time.Duration) []Process {
	deadline := time.Now().Add(d)
	for {
		left, err := Processes(dir)
		if err != nil || len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}
