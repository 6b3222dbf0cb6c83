package pluginhost

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel send cmd's process SIGKILL when the
// thread that starts it exits (see process).
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
