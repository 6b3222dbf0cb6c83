//go:build unix

package pluginhost

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"github.com/mailgate/gateway/sdk"
)

// callChannel makes the sockets of a plugin's call channel (sdk.CallConn):
// cmd gets one end as an extra file named in sdk.CallsFDEnv, and the host
// keeps the other. The caller closes child once the process has started
// (or failed to), and host when the instance ends.
func callChannel(cmd *exec.Cmd) (host net.Conn, child *os.File, err error) {
	syscall.ForkLock.RLock() // no fork in between may inherit the pair
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, fmt.Errorf("the call channel: socketpair: %w", err)
	}
	hf := os.NewFile(uintptr(fds[0]), "gateway-calls")
	child = os.NewFile(uintptr(fds[1]), "gateway-calls-plugin")
	host, err = net.FileConn(hf)
	hf.Close() // FileConn has its own descriptor
	if err != nil {
		child.Close()
		return nil, nil, fmt.Errorf("the call channel: %w", err)
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, child)
	cmd.Env = append(cmd.Env, sdk.CallsFDEnv+"="+strconv.Itoa(2+len(cmd.ExtraFiles)))
	return host, child, nil
}
