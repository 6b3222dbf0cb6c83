package main

import (
	"fmt"
	"time"
)

// The servers (serve, sink) run with a timer slack of defaultTimerSlack
// unless GATEWAY_TIMER_SLACK says otherwise ("0" keeps the kernel's).
//
// Why: Go's runtime has a monitor thread (sysmon) that sleeps 20 µs at a
// time while the program is busy and a thread sits in a syscall (an
// fsync, or any read or write that takes longer than that, as many do on
// a virtual machine). Each of its wake-ups is an OS context switch, and
// on a paravirtualised VM a switch costs tens of µs: measured with
// examples/benchmark/switches.sh, sysmon was the largest single source of
// the gateway's switches (2.7 of 6.8 a message under smtp-source). A timer
// slack lets the kernel fire such short sleeps up to the slack late,
// together with other wake-ups; with 1 ms the gateway made 40% fewer
// switches a message and spent 10-25% less CPU on it. Sleeps of the
// runtime and of every timer may end up to the slack late: a mail
// gateway's timers, from the engine's 1 ms waits for a message's lease
// (bounded by the clock, not by their count) to its SMTP timeouts of
// minutes, need no finer time than that. Plugins, started from the
// gateway's threads, have the slack too.
//
// A thread sets only its own slack, and sysmon is started before main
// runs; new threads inherit their creator's slack, and exec keeps it. So
// main sets it on its own thread and execs the gateway again (same PID,
// same arguments, same name), once: the new process's first thread, and
// every thread the runtime starts from it, has the slack. Where the exec
// is refused, the thread's slack is set back and the gateway runs as
// started.
const (
	defaultTimerSlack = time.Millisecond
	timerSlackEnv     = "GATEWAY_TIMER_SLACK"
	timerSlackMarker  = "GATEWAY_TIMER_SLACK_EXEC" // the process's name, across the exec: never twice
)

// timerSlackWanted parses GATEWAY_TIMER_SLACK's value v ("" = the default);
// 0 means leave the kernel's.
func timerSlackWanted(v string) (time.Duration, error) {
	if v == "" {
		return defaultTimerSlack, nil
	}
	if v == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > time.Second {
		return 0, fmt.Errorf("%s=%q: want a duration from 0 to 1s, such as 1ms", timerSlackEnv, v)
	}
	return d, nil
}
