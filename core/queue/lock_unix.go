//go:build unix

package queue

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockShared takes a shared lock on f, the spool.db being read by Check or
// Salvage, so that no gateway opens it for writing meanwhile; a gateway
// that holds it (bbolt's exclusive flock) is an error.
func lockShared(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return fmt.Errorf("%s is in use: stop the gateway that has it open first", f.Name())
	}
	return err
}
