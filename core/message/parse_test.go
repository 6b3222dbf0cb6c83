package message

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/sdk"
)

// scanHeader is parseHeader as Rewrite's scanner reads the header
// section, line by line, with values unfolded as they were before
// parseHeader (unfoldBefore): FuzzParseHeader's reference, so that the
// fields a hook reads are the fields Rewrite writes, and the values the
// ones hooks read before.
func scanHeader(r io.Reader) (fields []sdk.HeaderField, headerLen int64, clean bool, err error) {
	hs := newScanner(r)
	for {
		f, err := hs.next()
		if err != nil {
			return nil, 0, false, err
		}
		if f == nil {
			clean = len(hs.rest) == 0 || string(hs.rest) == "\r\n" || string(hs.rest) == "\n"
			return fields, hs.n, clean, nil
		}
		fields = append(fields, sdk.HeaderField{Name: f.name, Value: unfoldBefore(f.raw[f.valueAt:])})
	}
}

// unfoldBefore is unfold as it was before parseHeader.
func unfoldBefore(v []byte) string {
	if bytes.ContainsAny(v, "\r\n") {
		v = bytes.Map(func(r rune) rune {
			if r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, v)
	}
	return string(bytes.Trim(v, " \t"))
}

type parsed struct {
	Fields []sdk.HeaderField
	Len    int64
	Clean  bool
}

// checkParse compares parseHeader with scanHeader on msg, read at once
// and in pieces of chunk bytes, with and without the size.
func checkParse(t *testing.T, msg string, chunk int) {
	t.Helper()
	f, n, clean, err := scanHeader(strings.NewReader(msg))
	if err != nil {
		t.Fatalf("scanHeader: %v", err)
	}
	want := parsed{f, n, clean}
	for _, size := range []int64{0, int64(len(msg))} {
		for _, r := range []io.Reader{strings.NewReader(msg), &chunkReader{s: msg, n: max(chunk, 1)}} {
			f, n, clean, err := parseHeader(r, size)
			if err != nil {
				t.Fatalf("parseHeader: %v", err)
			}
			if diff := cmp.Diff(want, parsed{f, n, clean}); diff != "" {
				t.Fatalf("parseHeader(%.60q, size %d, %T) differs from the scanner's (-want +got):\n%s", msg, size, r, diff)
			}
		}
	}
}

// chunkReader reads s n bytes at a time, with an empty read between two.
type chunkReader struct {
	s     string
	n     int
	empty bool
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.empty = !r.empty; r.empty {
		return 0, nil
	}
	if r.s == "" {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.n)], r.s)
	r.s = r.s[n:]
	return n, nil
}

func TestParseHeaderMatchesScanner(t *testing.T) {
	long := strings.Repeat("a", MaxLine)
	for _, msg := range []string{
		"",
		"\r\n",
		"\n",
		"A: 1",
		"A: 1\r\n",
		"A: 1\r\n\r\nbody",
		"A: 1\r\n 2\r\n\t3\r\nB:4\r\n\r\n",
		"A: 1\r\n 2",
		"A: 1\r\n \r\n",
		" x: y\r\n\r\n",
		"A: 1\r\nbogus\r\nB: 2\r\n\r\n",
		"A : 1\r\n: x\r\n:\r\n \ty\r\n\r\n",
		"A: \xff\r\n \xfe\r\n\r\n",           // invalid UTF-8, folded and not
		"A: 1\r" + "\nB: 2\rC: 3\n\n",        // bare CR inside a line
		"A:" + long + "\r\nB: 2\r\n\r\n",     // a line over MaxLine
		"A:" + long[:MaxLine-5] + "\r\n\r\n", // just under MaxLine
		"A:" + long[:MaxLine-4] + "\r\n\r\n", // just over
		"A: 1\r\n " + long + "\r\n\r\n",      // a continuation over MaxLine
		"A: 1\r\n " + long[:MaxLine-10] + "\r\n " + long[:MaxLine-10] + "\r\n\r\n",    // a field over MaxLine, each line under
		strings.Repeat("Received: from a.example by b.example\r\n", 200) + "\r\nbody", // past several buffers
		"A:" + long,
	} {
		for _, chunk := range []int{1, 7, 4096} {
			checkParse(t, msg, chunk)
		}
	}
}

// TestParseHeaderErrors: a read error before the header section ends is
// returned; one after it is not the header's; a reader that returns
// nothing for ever is an error, not a hang.
func TestParseHeaderErrors(t *testing.T) {
	boom := errors.New("boom")
	if _, _, _, err := parseHeader(io.MultiReader(strings.NewReader("A: 1\r\nB: 2"), iotest.ErrReader(boom)), 0); !errors.Is(err, boom) {
		t.Errorf("error inside the header: %v; want boom", err)
	}
	f, n, _, err := parseHeader(io.MultiReader(strings.NewReader("A: 1\r\n\r\n"), iotest.ErrReader(boom)), 0)
	if want := []sdk.HeaderField{{Name: "A", Value: "1"}}; err != nil || n != 8 || !cmp.Equal(f, want) {
		t.Errorf("error after the header: %v, %d, %v; want %v, 8, nil", f, n, err, want)
	}
	if _, _, _, err := parseHeader(iotest.ErrReader(nil), 0); !errors.Is(err, io.ErrNoProgress) {
		t.Errorf("empty reads: %v; want io.ErrNoProgress", err)
	}
}

// FuzzParseHeader checks that parseHeader (one buffer, parts of one
// string) finds the fields, length and ending that Rewrite's line
// scanner finds, however the input is read.
func FuzzParseHeader(f *testing.F) {
	f.Add("Subject: hi\r\nX-A: 1\r\n 2\r\n\r\nbody\r\n", 3)
	f.Add("A: 1\nB: 2\n\nline\rnext\n", 1)
	f.Add("\r\nA: 1\r\n", 2)
	f.Add("From me\r\nA: 2\r\n\r", 5)
	f.Add(" cont\r\nA :\r\n\r\n", 1)
	f.Add("A: 1\r\n: x\r\n \r\nB: 2\r\n\r\n", 100)
	f.Add("A: \xff\r\n \xc3\r\n\r\n", 2)
	f.Fuzz(func(t *testing.T, msg string, chunk int) {
		checkParse(t, msg, chunk%64)
	})
}
