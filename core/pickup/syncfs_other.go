//go:build !linux

package pickup

import (
	"os"
	"syscall"
)

// syncFS syncs the file system that holds f: where there is no syncfs,
// every file system.
func syncFS(*os.File) error {
	syscall.Sync()
	return nil
}
