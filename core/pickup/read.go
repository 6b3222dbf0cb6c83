package pickup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ErrRefused is wrapped by Open's errors about a file the server must not
// read (a symlink, a hard link, not a regular file, too large, unreadable)
// or cannot make sense of (ErrMalformed): such a file goes to failed/.
var ErrRefused = errors.New("pickup: file refused")

// Message is one pickup file, open for reading.
type Message struct {
	Name string
	Env  *Envelope // Env.UID is the file owner's uid, not what the file says (see check)
	Size int64     // of the whole file
	// Created is when the message was written: the time in its name, or
	// the file's modification time if that is earlier (a name is the
	// writer's claim). A rewrite keeps the name, and so the age.
	Created time.Time

	f    *os.File
	body int64 // where the message starts
}

// Open opens the message name of dir and reads its envelope. It refuses
// (ErrRefused) a symlink, a file with more than one link (a hard link to
// a file its owner could not read), anything but a regular file, a file
// over maxSize bytes, one that cannot be opened (one the server may not
// read, a socket) and one whose envelope is malformed. A file that is
// gone gives an error wrapping os.ErrNotExist; the server's own want of
// descriptors or memory gives an error that is not ErrRefused either.
func Open(dir, name string, maxSize int64) (*Message, error) {
	// O_NONBLOCK: a FIFO put here must not hang the reader.
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	switch {
	case err == nil:
	case errors.Is(err, os.ErrNotExist), transient(err):
		return nil, fmt.Errorf("pickup: %w", err)
	default:
		// A symlink (ELOOP), a socket (ENXIO), a file the server may not
		// read: whatever a user put there that cannot be opened.
		return nil, fmt.Errorf("%w: %s: %w", ErrRefused, name, err)
	}
	m, err := check(f, name, maxSize)
	if err != nil {
		f.Close()
		return nil, err
	}
	return m, nil
}

// transient reports an open error that says nothing about the file: the
// server is short of descriptors or memory, or was interrupted.
func transient(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// check looks at the open file f and reads its envelope.
func check(f *os.File, name string, maxSize int64) (*Message, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("pickup: %w", err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("%w: %s is not a regular file (%s)", ErrRefused, name, st.Mode().Type())
	case !ok:
		return nil, fmt.Errorf("%w: %s: no owner known", ErrRefused, name)
	case sys.Nlink != 1:
		return nil, fmt.Errorf("%w: %s has %d links", ErrRefused, name, sys.Nlink)
	case st.Size() > maxSize:
		return nil, fmt.Errorf("%w: %s has %d bytes, more than %d", ErrRefused, name, st.Size(), maxSize)
	}
	env, n, err := ParseEnvelope(bufio.NewReaderSize(io.LimitReader(f, st.Size()), 4096))
	if err != nil {
		if errors.Is(err, ErrMalformed) {
			return nil, fmt.Errorf("%w: %s: %w", ErrRefused, name, err)
		}
		return nil, err
	}
	// A file of the reader's own user (or root's) is the server's own
	// rewrite, or a submission by a user who could write the spool
	// anyway: its recorded uid stands. Any other file is its owner's.
	if owner := int(sys.Uid); owner != os.Geteuid() && owner != 0 {
		env.UID = owner
	}
	created := st.ModTime()
	if t, ok := nameTime(name); ok && t.Before(created) {
		created = t
	}
	return &Message{Name: name, Env: env, Size: st.Size(), Created: created, f: f, body: n}, nil
}

// Body returns the message, from its start each time it is called.
func (m *Message) Body() io.Reader { return io.NewSectionReader(m.f, m.body, m.Size-m.body) }

// Close closes the file.
func (m *Message) Close() error { return m.f.Close() }
