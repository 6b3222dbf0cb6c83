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

// Write stores one message in dir with its envelope under a new name,
// which it returns (see WriteName).
func Write(dir string, env *Envelope, msg io.Reader) (string, error) {
	name := NewName(time.Now())
	return name, WriteName(dir, name, env, msg)
}

// WriteName stores one message in dir/name with its envelope, replacing
// what was there: it writes a temporary file, fsyncs it, renames it into
// place and syncs the directory. When it returns nil the message survives
// a crash, and a reader never sees half a file.
func WriteName(dir, name string, env *Envelope, msg io.Reader) (err error) {
	head, err := env.Encode()
	if err != nil {
		return err
	}
	var r [12]byte
	rand.Read(r[:])
	tmp := filepath.Join(dir, tmpPrefix+hex.EncodeToString(r[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("pickup: %w", err)
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
		return fmt.Errorf("pickup: %w", err)
	}
	if _, err = f.Write(head); err != nil {
		return fmt.Errorf("pickup: %w", err)
	}
	if _, err = io.Copy(f, msg); err != nil {
		return fmt.Errorf("pickup: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("pickup: %w", err)
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("pickup: %w", err)
	}
	// f stays open for syncDir: a local user syncs through it.
	if err = syncDir(dir, f); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("pickup: %w", err)
	}
	return nil
}
