package pickup

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Write stores one message in dir with its envelope and returns the
// file's name. It writes a temporary file, fsyncs it, renames it into
// place and syncs the directory: when Write returns nil the message
// survives a crash, and a reader never sees half a file.
func Write(dir string, env *Envelope, msg io.Reader) (name string, err error) {
	head, err := env.Encode()
	if err != nil {
		return "", err
	}
	var r [12]byte
	rand.Read(r[:])
	tmp := filepath.Join(dir, tmpPrefix+hex.EncodeToString(r[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", fmt.Errorf("pickup: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// The server may run as another user: the file must be readable
	// whatever the writer's umask (see the package doc).
	if err = f.Chmod(0o644); err != nil {
		return "", fmt.Errorf("pickup: %w", err)
	}
	if _, err = f.Write(head); err != nil {
		return "", fmt.Errorf("pickup: %w", err)
	}
	if _, err = io.Copy(f, msg); err != nil {
		return "", fmt.Errorf("pickup: %w", err)
	}
	if err = f.Sync(); err != nil {
		return "", fmt.Errorf("pickup: %w", err)
	}
	if err = f.Close(); err != nil {
		return "", fmt.Errorf("pickup: %w", err)
	}
	name = newName(time.Now())
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return "", fmt.Errorf("pickup: %w", err)
	}
	return name, syncDir(dir)
}
