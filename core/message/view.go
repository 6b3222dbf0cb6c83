package message

import (
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/mailgate/gateway/sdk"
)

// View is a read-only, lazy view of a message's content: nothing is read
// until a method asks for it, the header section is parsed once, and the
// body is read only up to the limit asked for. It is safe for concurrent
// use. It implements hook.Message.
type View struct {
	size int64
	open func() (io.ReadCloser, error)

	mu     sync.Mutex
	parsed bool
	fields []sdk.HeaderField
	hlen   int64 // bytes of the header section
	clean  bool  // the header section ended with an empty line or the input (parseHeader)
	err    error // sticky: opening or reading the header failed
}

// NewView returns a view of the size bytes that open returns. open may be
// called more than once; a reader that is also an io.Seeker lets Body skip
// the header section without reading it again.
func NewView(size int64, open func() (io.ReadCloser, error)) *View {
	return &View{size: size, open: open}
}

// Size returns the size of the content in bytes.
func (v *View) Size() int64 { return v.size }

// Header returns the header fields in order (ParseHeader); the slice is the
// caller's.
func (v *View) Header() ([]sdk.HeaderField, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.parse(); err != nil {
		return nil, err
	}
	return slices.Clone(v.fields), nil
}

// SharedHeader is Header without the copy: the slice is the view's own,
// which the caller must not change. It is for readers that only look (a
// Lua script's msg:header), which a copy a call would only cost.
func (v *View) SharedHeader() ([]sdk.HeaderField, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.parse(); err != nil {
		return nil, err
	}
	return v.fields, nil
}

// HeaderEndsClean reports whether the header section ended with an empty
// line or the end of the content, not with a line that is not a field
// (see parseHeader); it is known from the one parse Header does.
func (v *View) HeaderEndsClean() (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.parse(); err != nil {
		return false, err
	}
	return v.clean, nil
}

// Body returns the body (what follows the header section), at most limit
// bytes of it; limit <= 0 means all of it.
func (v *View) Body(limit int) ([]byte, error) {
	v.mu.Lock()
	err := v.parse()
	hlen := v.hlen
	v.mu.Unlock()
	if err != nil {
		return nil, err
	}
	rc, err := v.open()
	if err != nil {
		return nil, fmt.Errorf("message: open: %w", err)
	}
	defer rc.Close()
	if sk, ok := rc.(io.Seeker); ok {
		_, err = sk.Seek(hlen, io.SeekStart)
	} else {
		_, err = io.CopyN(io.Discard, rc, hlen)
	}
	if err != nil {
		return nil, fmt.Errorf("message: read body: %w", err)
	}
	var r io.Reader = rc
	n := v.size - hlen
	if limit > 0 {
		r, n = io.LimitReader(rc, int64(limit)), min(n, int64(limit))
	}
	b := make([]byte, 0, max(n, 0))
	b, err = readAll(b, r)
	if err != nil {
		return nil, fmt.Errorf("message: read body: %w", err)
	}
	return b, nil
}

// parse reads the header section once; v.mu is held.
func (v *View) parse() error {
	if v.parsed {
		return v.err
	}
	v.parsed = true
	rc, err := v.open()
	if err != nil {
		v.err = fmt.Errorf("message: open: %w", err)
		return v.err
	}
	defer rc.Close()
	v.fields, v.hlen, v.clean, err = parseHeader(rc, v.size)
	if err != nil {
		v.fields, v.err = nil, fmt.Errorf("message: read header: %w", err)
	}
	return v.err
}

// readAll is io.ReadAll into b.
func readAll(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
