package main

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"
)

const (
	prSetTimerSlack = 29 // prctl(2) PR_SET_TIMERSLACK
	prGetTimerSlack = 30 // prctl(2) PR_GET_TIMERSLACK
)

// keepTimerSlack gives the process the timer slack GATEWAY_TIMER_SLACK
// asks for (see timerslack.go): if its thread has another, it sets it and
// execs the gateway again, and does not return. It returns an error, for
// a warning, when it cannot; the gateway then runs with the kernel's.
func keepTimerSlack() error {
	want, err := timerSlackWanted(os.Getenv(timerSlackEnv))
	if err != nil || want == 0 {
		return err
	}
	runtime.LockOSThread() // the prctl and the exec on one thread
	defer runtime.UnlockOSThread()
	have, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prGetTimerSlack, 0, 0)
	switch {
	case errno != 0:
		return fmt.Errorf("timer slack: %w", errno)
	case time.Duration(have) == want:
		os.Unsetenv(timerSlackMarker)
		return nil
	case os.Getenv(timerSlackMarker) != "":
		os.Unsetenv(timerSlackMarker)
		return fmt.Errorf("timer slack: %v after the exec, not %v", time.Duration(have), want)
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, uintptr(want), 0); errno != 0 {
		return fmt.Errorf("timer slack: %w", errno)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("timer slack: %w", err)
	}
	os.Setenv(timerSlackMarker, "1")
	err = syscall.Exec(exe, os.Args, os.Environ())
	os.Unsetenv(timerSlackMarker)
	return fmt.Errorf("timer slack: exec %s: %w", exe, err)
}
