//go:build !unix

package queue

import "os"

// lockShared does nothing where there is no flock: stop the gateway before
// checking or salvaging its spool.
func lockShared(*os.File) error { return nil }
