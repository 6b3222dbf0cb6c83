//go:build linux

package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/pluginhost/pluginhosttest"
)

// envDenyExec makes the gateway child started by a test run under a
// seccomp filter that fails execve and execveat with EPERM, as a
// hardened service (a container profile, a systemd SystemCallFilter
// with SystemCallErrorNumber=EPERM) may: the re-execution for the timer
// slack is refused.
const envDenyExec = "GATEWAY_TEST_DENY_EXEC"

// envReplaceSelf names a file that the gateway child started by a test
// renames over its own executable before main runs (the first image
// only): a package upgrade that replaces the binary while the gateway
// starts.
const envReplaceSelf = "GATEWAY_TEST_REPLACE_SELF"

// init runs in the child before TestMain calls main.
func init() {
	if os.Getenv(envRunMain) != "1" {
		return
	}
	if os.Getenv(envDenyExec) == "1" {
		if err := denyExec(); err != nil {
			panic("deny exec: " + err.Error())
		}
	}
	if with := os.Getenv(envReplaceSelf); with != "" && os.Getenv(timerSlackMarker) == "" {
		exe, err := os.Executable()
		if err == nil {
			err = os.Rename(with, exe)
		}
		if err != nil {
			panic("replace self: " + err.Error())
		}
	}
}

// denyExec installs, on every thread (TSYNC), a seccomp filter that
// fails execve and execveat with EPERM and allows everything else.
func denyExec() error {
	const retErrnoEPERM = unix.SECCOMP_RET_ERRNO | uint32(syscall.EPERM)
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 2, K: unix.SYS_EXECVE},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, K: unix.SYS_EXECVEAT},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		{Code: unix.BPF_RET | unix.BPF_K, K: retErrnoEPERM},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return errno
	}
	return nil
}

// Where execve is refused, the gateway warns that it runs "with the
// kernel's" timer slack, and it must: every thread with the slack it was
// started with, none with the 1 ms it asked for. It fails on main: the
// prctl was made on the thread that tried the exec and is not undone, so
// that thread (and every thread the runtime later starts from it) runs
// with 1 ms and the others with 50 µs, while the warning says otherwise.
func TestTimerSlackWhenExecIsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	kernels := ownSlack(t)
	t.Setenv(timerSlackEnv, "")
	t.Setenv(envDenyExec, "1")
	c := startGateway(t, "sink", "--listen", "127.0.0.1:0")
	if got := c.stderr.String(); !strings.Contains(got, "operation not permitted; running with the kernel's") {
		t.Fatalf("stderr %q, want the warning that the exec was refused", got)
	}
	for i, s := range slacks(t, c.cmd.Process.Pid) {
		if s != kernels {
			t.Errorf("thread %d of %d: slack %d ns, want %d (the kernel's, as the warning says)", i, c.cmd.Process.Pid, s, kernels)
		}
	}
}

// An operator who runs the gateway under another name (a symlink, as
// sendmail and mailq are; here "mailgate") finds it under that name in
// ps, pgrep -x, killall, a monitor's process check and the journal's
// _COMM: the re-execution for the timer slack must not rename the
// process. It fails on main: the exec goes through os.Executable, the
// symlink's target, and the kernel names the process after the path
// executed, so "mailgate" becomes the binary's own name.
func TestTimerSlackExecKeepsProcessName(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ownSlack(t)
	link := filepath.Join(t.TempDir(), "mailgate")
	if err := os.Symlink(os.Args[0], link); err != nil {
		t.Fatal(err)
	}
	pid, first := startSinkAt(t, link)
	select {
	case line := <-first:
		if !sinkListeningLn.MatchString(line) {
			t.Fatal("gateway sink did not start listening")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("gateway sink did not start listening")
	}
	if s := slacks(t, pid); s[0] != 1_000_000 {
		t.Fatalf("slack %d ns: the exec for the timer slack did not happen; the test shows nothing", s[0])
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != "mailgate" {
		t.Errorf("process %d is named %q after the exec, want %q (the name it was started as)", pid, got, "mailgate")
	}
}

// A plugin the gateway starts inherits its timer slack (a thread's slack
// passes to the processes it forks, and exec keeps it), which its own
// sysmon profits from as the gateway's does; the marker of the gateway's
// re-execution does not reach it (it would tell a gateway started by a
// plugin that it had already re-executed). It passes on main: it pins
// what the README does not say.
func TestPluginInheritsTimerSlack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts processes")
	}
	ownSlack(t)
	t.Setenv(timerSlackEnv, "")
	bin := gatewaytest.BuildPlugin(t, testPlugin)
	path := writeConfig(t, t.TempDir(), pluginConfig(bin, "Blocked", t.TempDir()))
	gw := startGateway(t, "serve", "-config", path)
	plugins, err := pluginhosttest.Processes(filepath.Dir(bin))
	if err != nil || len(plugins) == 0 {
		t.Fatalf("no plugin process while the gateway serves (%v)\nlog:\n%s", err, gw.stderr)
	}
	for _, p := range plugins {
		for i, s := range slacks(t, p.PID) {
			if s != 1_000_000 {
				t.Errorf("plugin %d, thread %d: slack %d ns, want the gateway's 1 ms", p.PID, i, s)
			}
		}
		env, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		for v := range strings.SplitSeq(string(env), "\x00") {
			if strings.HasPrefix(v, timerSlackMarker+"=") {
				t.Errorf("plugin %d's environment has %s", p.PID, v)
			}
		}
	}
}

// The re-execution for the timer slack runs the program the process is,
// not whatever the path it was started from holds a moment later: a
// binary replaced on disk while the gateway starts (a package upgrade
// renaming the new version over it; its /proc/self/exe then reads
// "(deleted)") must not turn the started gateway into another program
// under the same PID. It fails on main: the exec takes os.Executable's
// path, which names the new file, and here the process becomes the
// script put there.
func TestTimerSlackExecOfReplacedBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ownSlack(t)
	dir := t.TempDir()
	exe := filepath.Join(dir, "gateway")
	copyExecutable(t, os.Args[0], exe)
	script := filepath.Join(dir, "new")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho replaced\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, first := startSinkAt(t, exe, envReplaceSelf+"="+script)
	select {
	case line := <-first:
		if !sinkListeningLn.MatchString(line) {
			t.Errorf("the gateway's first line %q, want it listening: the exec ran the file that replaced the binary", line)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no output from the gateway in 20 s")
	}
}

// startSinkAt runs `gateway sink --listen 127.0.0.1:0` from the test
// binary at exe (a link to it or a copy), with the default timer slack and
// env added, and returns its PID and its first line of output.
func startSinkAt(t *testing.T, exe string, env ...string) (pid int, first <-chan string) {
	t.Helper()
	return startSinkCmd(t, exec.Command(exe, "sink", "--listen", "127.0.0.1:0"), env...)
}

// startSinkCmd starts cmd, which runs the test binary as `gateway sink`
// (directly or through a wrapper such as chrt), as startSinkAt does.
func startSinkCmd(t *testing.T, cmd *exec.Cmd, env ...string) (pid int, first <-chan string) {
	t.Helper()
	cmd.Env = append(append(os.Environ(), envRunMain+"=1", timerSlackEnv+"="), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
	}()
	return cmd.Process.Pid, line
}

// copyExecutable copies the file from to the new executable file to.
func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// Under a real-time scheduling policy (chrt -f) the kernel applies no
// timer slack and ignores PR_SET_TIMERSLACK, so the gateway must not
// exec itself for one nor warn that it did not get it: it failed on
// main with "timer slack: 0s after the exec, not 1ms" on every start.
func TestTimerSlackUnderRealTime(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ownSlack(t)
	chrt, err := exec.LookPath("chrt")
	if err != nil {
		t.Skipf("needs chrt (util-linux): %v", err)
	}
	if out, err := exec.Command(chrt, "-f", "1", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot run under SCHED_FIFO here: %v %s", err, out)
	}
	cmd := exec.Command(chrt, "-f", "1", os.Args[0], "sink", "--listen", "127.0.0.1:0")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	_, line := startSinkCmd(t, cmd)
	select {
	case l := <-line:
		if !sinkListeningLn.MatchString(l) {
			t.Fatalf("gateway sink under chrt printed %q first; stderr %q", l, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("gateway sink under chrt did not start; stderr %q", stderr.String())
	}
	if got := stderr.String(); strings.Contains(got, "timer slack") {
		t.Errorf("stderr %q: a warning about the timer slack under a real-time policy", got)
	}
}
