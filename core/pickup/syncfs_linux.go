package pickup

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFS syncs the file system that holds f, and only that one.
func syncFS(f *os.File) error { return unix.Syncfs(int(f.Fd())) }
