package lua

import "unsafe"

// copyChunk is the most bytes text copies at once. The Go runtime cannot
// stop a goroutine inside a copy (runtime.memmove), and a garbage
// collection begins by stopping them all: copies of tens of megabytes into
// fresh memory held every session of a busy gateway for a few hundred
// milliseconds. Between two chunks the goroutine can be stopped.
const copyChunk = 256 << 10

// text builds the long strings of the string functions (.., table.concat,
// string.rep, gsub, pieces of long strings) in copies of at most
// copyChunk bytes, growing by doubling, itself in chunks.
type text struct {
	buf []byte
}

// newText returns a text with room for n bytes.
func newText(n int) *text { return &text{buf: make([]byte, 0, n)} }

func (t *text) Len() int { return len(t.buf) }
func (t *text) Cap() int { return cap(t.buf) }

// grow makes room for n more bytes: at least twice the room there was.
func (t *text) grow(n int) {
	if len(t.buf)+n <= cap(t.buf) {
		return
	}
	buf := make([]byte, 0, max(len(t.buf)+n, 2*cap(t.buf)))
	t.buf = appendChunked(buf, t.String())
}

// add appends s, growing as needed.
func (t *text) add(s string) {
	t.grow(len(s))
	t.buf = appendChunked(t.buf, s)
}

// repeat appends what the text holds until it holds n bytes (string.rep).
func (t *text) repeat(n int) {
	t.grow(n - len(t.buf))
	for len(t.buf) < n {
		t.buf = append(t.buf, t.buf[:min(len(t.buf), n-len(t.buf), copyChunk)]...)
	}
}

// String returns the text as a string without a copy: the text must not
// change after (but for a grow, which copies it).
func (t *text) String() string {
	if len(t.buf) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(t.buf), len(t.buf))
}

// appendChunked is append(dst, src...) in copies of copyChunk bytes; dst
// has the room.
func appendChunked(dst []byte, src string) []byte {
	for len(src) > copyChunk {
		dst = append(dst, src[:copyChunk]...)
		src = src[copyChunk:]
	}
	return append(dst, src...)
}
