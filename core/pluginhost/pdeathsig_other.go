//go:build !linux

package pluginhost

import "os/exec"

// dieWithParent does nothing where there is no parent-death signal; the
// sdk's Serve still exits when its parent is gone.
func dieWithParent(*exec.Cmd) {}
