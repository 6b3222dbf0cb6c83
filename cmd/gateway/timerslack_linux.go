package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

const (
	prSetTimerSlack = 29 // prctl(2) PR_SET_TIMERSLACK
	prGetTimerSlack = 30 // prctl(2) PR_GET_TIMERSLACK
)

// keepTimerSlack gives the process the timer slack GATEWAY_TIMER_SLACK
// asks for (see timerslack.go): if its thread has another, it sets it and
// execs the running program again (/proc/self/exe: the binary it was
// started from, even if an upgrade has replaced it on disk since), and
// does not return. The exec names the process after that path, so the
// marker carries the name it was started as, and the new process takes
// it back. It returns an error, for a warning, when it cannot; the
// gateway then runs with the slack it was started with, on every thread.
func keepTimerSlack() error {
	want, err := timerSlackWanted(os.Getenv(timerSlackEnv))
	if err != nil || want == 0 {
		return err
	}
	runtime.LockOSThread() // the prctls and the exec on one thread
	defer runtime.UnlockOSThread()
	if realTime() {
		return nil // the kernel gives real-time threads no slack: nothing to set
	}
	have, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prGetTimerSlack, 0, 0)
	if errno != 0 {
		return fmt.Errorf("timer slack: %w", errno)
	}
	if name, ok := os.LookupEnv(timerSlackMarker); ok {
		os.Unsetenv(timerSlackMarker)
		renameThreads(name)
		if time.Duration(have) != want {
			return fmt.Errorf("timer slack: %v after the exec, not %v", time.Duration(have), want)
		}
		return nil
	}
	if time.Duration(have) == want {
		return nil
	}
	if err := setTimerSlack(want); err != nil {
		return err
	}
	os.Setenv(timerSlackMarker, processName())
	err = syscall.Exec("/proc/self/exe", os.Args, os.Environ())
	os.Unsetenv(timerSlackMarker)
	// Still here: the slack goes back to what every other thread has.
	if rerr := setTimerSlack(time.Duration(have)); rerr != nil {
		return fmt.Errorf("timer slack: exec: %w; and setting it back: %w", err, rerr)
	}
	return fmt.Errorf("timer slack: exec: %w", err)
}

// realTime reports whether this thread runs under a real-time scheduling
// policy (chrt -f or -r, SCHED_DEADLINE), for which the kernel applies
// no timer slack and ignores PR_SET_TIMERSLACK.
func realTime() bool {
	const schedFIFO, schedRR, schedDeadline = 1, 2, 6
	policy, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_GETSCHEDULER, 0, 0, 0)
	if errno != 0 {
		return false
	}
	switch policy &^ 0x40000000 { // SCHED_RESET_ON_FORK
	case schedFIFO, schedRR, schedDeadline:
		return true
	}
	return false
}

func setTimerSlack(d time.Duration) error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, uintptr(d), 0); errno != 0 {
		return fmt.Errorf("timer slack: %w", errno)
	}
	return nil
}

// processName is the process's name (comm), or the base of the path it
// was started as when it cannot be read.
func processName() string {
	if b, err := os.ReadFile("/proc/self/comm"); err == nil {
		return strings.TrimSuffix(string(b), "\n")
	}
	return filepath.Base(os.Args[0])
}

// renameThreads names every thread of the process name (the exec of
// /proc/self/exe named them "exe"); threads started later take the name
// of the thread that starts them. Best effort: a name is cosmetic.
func renameThreads(name string) {
	if name == "" {
		return
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/comm")
	for _, comm := range tasks {
		os.WriteFile(comm, []byte(name), 0)
	}
}
