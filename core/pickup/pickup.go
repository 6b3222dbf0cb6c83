// Package pickup owns the pickup directory: the place under data_dir where
// `gateway sendmail` leaves each message of a local program, with its
// envelope, so that no mail is lost while the server is down, and where
// the running server finds it again (Postfix's maildrop and pickup).
//
// One file is one message: a small text envelope (see Encode), an empty
// line, then the message as given. A writer makes a temporary file,
// fsyncs it, renames it into place and fsyncs the directory (Write); a
// reader lists the files in time order (List), opens one refusing what a
// local user could use against the server (Open: symlinks, hard links,
// devices and FIFOs, files over the size limit, malformed envelopes),
// and afterwards removes it, rewrites it, or moves it to failed/.
//
// The directory is mode 1733 (like /tmp, but not listable): any local
// user may drop a file, nobody but its owner (the server's user) may list
// it or remove another's file. The files are 0644 under random names, so
// the server reads them whatever user it runs as, and other users cannot
// find them. What a file says about its sender is a claim: the reader
// reports the file owner's uid, which a user cannot forge (the uid a file
// records is believed only in a file of the reader's own user or root:
// the server's rewrites), and the server records it as the submission's
// identity.
package pickup

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Mode is the pickup directory's mode: writable and searchable by every
// local user, listable by its owner only, and sticky.
const Mode = os.ModeSticky | 0o733

// FailedDir is the folder, inside the pickup directory, that keeps the
// messages the server refused for good or could not read, for the
// operator; nothing is deleted without a trace.
const FailedDir = "failed"

// tmpPrefix starts the names of files being written; List skips them.
const tmpPrefix = "tmp."

// staleTemp is how old a temporary file must be before Sweep removes it:
// a writer that died left it.
const staleTemp = 24 * time.Hour

// Prepare creates the pickup directory dir (and its parents) if needed
// and, when this process owns it, gives it Mode and a failed/ folder only
// the owner may enter. The server calls it at start; sendmail calls it
// when the directory is missing.
//
// Every user must reach dir, so Prepare also lets others search (never
// list or read) dir's parent, data_dir, when this process owns it: the
// spool makes data_dir 0700, and its own folders stay so.
func Prepare(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("pickup: %w", err)
	}
	if err := searchable(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("pickup: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("pickup: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("pickup: %s is not a directory", dir)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || int(sys.Uid) != os.Geteuid() {
		return nil // someone else's: leave it as its owner made it
	}
	if st.Mode()&(os.ModePerm|os.ModeSticky) != Mode {
		if err := os.Chmod(dir, Mode); err != nil {
			return fmt.Errorf("pickup: %w", err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, FailedDir), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("pickup: %w", err)
	}
	return nil
}

// searchable adds the search (x) bit for group and others to dir when
// this process owns it; it adds nothing else.
func searchable(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("pickup: %w", err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || int(sys.Uid) != os.Geteuid() || st.Mode().Perm()&0o011 == 0o011 {
		return nil
	}
	if err := os.Chmod(dir, st.Mode()&(os.ModePerm|os.ModeSetgid|os.ModeSticky)|0o011); err != nil {
		return fmt.Errorf("pickup: %w", err)
	}
	return nil
}

// CheckReachable returns an error naming the first folder above dir that
// other users may not search: then no local user but the server's can
// reach dir, and sendmail fails for them. The server warns of it at start.
func CheckReachable(dir string) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("pickup: %w", err)
		}
		if perm := st.Mode().Perm(); perm&0o001 == 0 {
			return fmt.Errorf("pickup: other users cannot reach %s: %s is mode %04o (chmod o+x it)", dir, d, perm)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// CheckOwner refuses a pickup directory that another user owns: its
// owner could list, read and replace every user's mail, and the server
// could not remove the files it has queued. The server checks it at
// start.
func CheckOwner(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("pickup: %w", err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if euid := os.Geteuid(); int(sys.Uid) != euid {
		return fmt.Errorf("pickup: %s belongs to uid %d, and the gateway runs as uid %d: give it to the gateway's user (chown %d %s)",
			dir, sys.Uid, euid, euid, dir)
	}
	return nil
}

// NewName is a file name that sorts by time and cannot be guessed, for
// WriteName; Write makes one itself.
func NewName(now time.Time) string {
	var r [12]byte
	rand.Read(r[:])
	return fmt.Sprintf("%020d.%s", now.UnixNano(), hex.EncodeToString(r[:]))
}

// validName reports whether name is a ready message's name as NewName
// makes it (not a temporary file, not failed/, nothing else).
func validName(name string) bool {
	t, r, ok := strings.Cut(name, ".")
	if !ok || len(t) != 20 || len(r) != 24 {
		return false
	}
	for _, c := range t + r {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// nameTime is the time in a name NewName made.
func nameTime(name string) (time.Time, bool) {
	stamp, _, _ := strings.Cut(name, ".")
	nanos, err := strconv.ParseInt(stamp, 10, 64)
	if err != nil || !validName(name) {
		return time.Time{}, false
	}
	return time.Unix(0, nanos), true
}

// List returns the names of the messages waiting in dir, oldest first.
func List(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("pickup: %w", err)
	}
	var names []string
	for _, e := range entries {
		if validName(e.Name()) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// Sweep removes the temporary files in dir that a writer left more than a
// day ago, and moves any other stray entry (not a message, not failed/)
// into failed/, so that the directory holds only what List returns. An
// entry it cannot move does not stop it: it returns every such error,
// joined.
func Sweep(dir string, now time.Time) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("pickup: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == FailedDir || validName(name):
		case strings.HasPrefix(name, tmpPrefix):
			if info, err := e.Info(); err == nil && now.Sub(info.ModTime()) > staleTemp {
				os.Remove(filepath.Join(dir, name))
			}
		default:
			errs = append(errs, Fail(dir, name))
		}
	}
	return errors.Join(errs...)
}

// Remove deletes the message name from dir, durably: the server calls it
// once the spool has the message.
func Remove(dir, name string) error {
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("pickup: %w", err)
	}
	return syncDir(dir, nil)
}

// Fail moves the entry name of dir into dir/failed, under a name nothing
// there has (FailedName): the same name may fail again. A symlink moves
// as the link itself: rename does not follow it.
func Fail(dir, name string) error {
	failed := filepath.Join(dir, FailedDir)
	if err := os.Mkdir(failed, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("pickup: %w", err)
	}
	to, err := FailedName(dir, name)
	if err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, name), filepath.Join(failed, to)); err != nil {
		return fmt.Errorf("pickup: %w", err)
	}
	if err := syncDir(failed, nil); err != nil {
		return err
	}
	return syncDir(dir, nil)
}

// FailedName is a name for name in dir/failed that no entry there has:
// name itself, else name with a random suffix. Only the server writes
// failed/, so the name stays free until it uses it.
func FailedName(dir, name string) (string, error) {
	failed := filepath.Join(dir, FailedDir)
	for to := name; ; {
		_, err := os.Lstat(filepath.Join(failed, to))
		switch {
		case errors.Is(err, os.ErrNotExist):
			return to, nil
		case err != nil:
			return "", fmt.Errorf("pickup: %w", err)
		}
		var r [4]byte
		rand.Read(r[:])
		to = name + "." + hex.EncodeToString(r[:])
	}
}

// syncDir makes the entries of dir durable. A local user may not open the
// pickup directory (it is not readable for them): then the file system
// of f, an open file in dir, is synced instead (syncfs); without f, that
// is an error.
func syncDir(dir string, f *os.File) error {
	d, err := os.Open(dir)
	if errors.Is(err, os.ErrPermission) && f != nil {
		if err := syncFS(f); err != nil {
			return fmt.Errorf("pickup: sync %s: %w", dir, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("pickup: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("pickup: sync %s: %w", dir, err)
	}
	return nil
}
