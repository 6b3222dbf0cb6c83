package pluginhost

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"

	"github.com/hashicorp/go-plugin"
)

// process is one plugin process. A plugin must not outlive the gateway,
// even one killed with SIGKILL: on Linux its command carries a
// parent-death signal (SIGKILL, pdeathsig_linux.go), and the sdk's Serve
// also exits when its parent is gone (other systems, and a second line of
// defence).
//
// The parent-death signal fires when the *thread* that started the
// process exits, not the gateway, and Go ends a thread when a goroutine
// locked to it returns. So the start runs on a goroutine of its own,
// locked to its thread for as long as the process lives: no other
// goroutine runs on that thread, and nothing can end it early. Kill ends
// the process, then releases the thread.
//
// The process makes its unix sockets in a folder of its own (sockets,
// given by go-plugin's PLUGIN_UNIX_SOCKET_DIR), which Kill removes: a
// process that is killed, rather than asked to stop, cannot remove its
// sockets itself, and they would stay in the system's temporary folder.
type process struct {
	client  *plugin.Client
	sockets string        // the process's socket folder; "" for none (socketDir)
	exited  chan struct{} // closed by Kill
	once    sync.Once
}

// socketDir makes the socket folder of a process about to start with
// cmd, and names it in cmd's environment. Under a temporary folder whose
// name leaves no room for it (a unix socket's path has at most
// maxSocketPath bytes) it makes none, and returns "": the process's
// sockets go to the temporary folder itself, as go-plugin puts them.
func socketDir(cmd *exec.Cmd) (string, error) {
	const (
		prefix = "gateway-plugin-"
		random = 10 // the digits os.MkdirTemp and os.CreateTemp add at most
		socket = "/plugin"
	)
	if len(os.TempDir())+1+len(prefix)+random+len(socket)+random > maxSocketPath {
		return "", nil
	}
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", fmt.Errorf("pluginhost: socket folder: %w", err)
	}
	cmd.Env = append(cmd.Env, plugin.EnvUnixSocketDir+"="+dir)
	return dir, nil
}

// maxSocketPath is the longest path of a unix socket Go binds on Linux
// (sun_path's 108 bytes, less the terminating NUL).
const maxSocketPath = 107

// removeSockets removes a socket folder made by socketDir.
func removeSockets(dir string) {
	if dir != "" {
		os.RemoveAll(dir)
	}
}

// startProcess starts client's process as described above; sockets is
// its socket folder (socketDir), removed if the start fails.
func startProcess(client *plugin.Client, sockets string) (*process, error) {
	p := &process{client: client, sockets: sockets, exited: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		addr, err := client.Start()
		if err == nil {
			if err = checkAddr(addr); err != nil {
				client.Kill()
			}
		}
		errc <- err
		if err == nil {
			<-p.exited
		}
	}()
	if err := <-errc; err != nil {
		removeSockets(sockets)
		return nil, err
	}
	return p, nil
}

// ErrAddress is wrapped by the error of a plugin whose handshake names an
// address other than a unix socket or a loopback TCP address: the host
// would dial it, so a plugin could make the gateway connect anywhere.
var ErrAddress = errors.New("pluginhost: the plugin's handshake names an address that is neither a unix socket nor on loopback")

// checkAddr accepts the address of a plugin's handshake if it is a unix
// socket or a loopback TCP address.
func checkAddr(addr net.Addr) error {
	switch a := addr.(type) {
	case *net.UnixAddr:
		return nil
	case *net.TCPAddr:
		if a.IP.IsLoopback() {
			return nil
		}
	}
	return fmt.Errorf("%w: %s %s", ErrAddress, addr.Network(), addr)
}

// Kill stops the process (gracefully, then forcibly, as go-plugin does)
// and waits for it, then lets its starting thread go.
func (p *process) Kill() {
	p.client.Kill()
	p.once.Do(func() {
		close(p.exited)
		removeSockets(p.sockets)
	})
}

// Client returns the connection to the process (go-plugin's
// Client.Client).
func (p *process) Client() (plugin.ClientProtocol, error) { return p.client.Client() }

// Exited reports whether the process has exited.
func (p *process) Exited() bool { return p.client.Exited() }
