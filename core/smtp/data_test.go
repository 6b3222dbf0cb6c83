package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// dataResult is what one DataReader run produced.
type dataResult struct {
	out  string // everything Read returned
	err  error  // the final error (io.EOF on a clean end)
	rest string // what the session still finds in the bufio.Reader
}

// runDataReader feeds in through a bufio.Reader (oneByteIn: the connection
// returns one byte per read) and reads the content with buffers of outSize
// bytes. It checks that the final error repeats.
func runDataReader(t testing.TB, in string, opt DataReaderOptions, oneByteIn bool, outSize int) dataResult {
	t.Helper()
	var src io.Reader = strings.NewReader(in)
	size := 4096
	if oneByteIn {
		src = iotest.OneByteReader(src)
		size = 16 // bufio's minimum
	}
	br := bufio.NewReaderSize(src, size)
	dr := NewDataReader(br, opt)
	var out bytes.Buffer
	buf := make([]byte, outSize)
	var err error
	for calls := 0; ; calls++ {
		if calls > 4*len(in)+10 {
			t.Fatalf("Read made no progress on %q", in)
		}
		var n int
		n, err = dr.Read(buf)
		if n < 0 || n > len(buf) {
			t.Fatalf("Read returned n=%d for a buffer of %d", n, len(buf))
		}
		out.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if dr.Size() != int64(out.Len()) {
		t.Errorf("Size() = %d, want %d", dr.Size(), out.Len())
	}
	for range 2 {
		if n, again := dr.Read(buf); n != 0 || again != err {
			t.Fatalf("Read after the end = %d, %v; want 0, %v", n, again, err)
		}
	}
	rest, _ := io.ReadAll(br)
	return dataResult{out: out.String(), err: err, rest: string(rest)}
}

func TestDataReader(t *testing.T) {
	const mail = "MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
	fix := DataReaderOptions{FixBareLineEndings: true}
	tests := []struct {
		name string
		in   string
		opt  DataReaderOptions
		want dataResult
	}{
		// Clean messages.
		{name: "simple", in: "Subject: a\r\n\r\nbody\r\n.\r\n",
			want: dataResult{out: "Subject: a\r\n\r\nbody\r\n", err: io.EOF}},
		{name: "empty at start", in: ".\r\n", want: dataResult{err: io.EOF}},
		{name: "empty pipelined", in: ".\r\nQUIT\r\n", want: dataResult{err: io.EOF, rest: "QUIT\r\n"}},
		{name: "pipelined", in: "a\r\n.\r\nMAIL FROM:<a@b>\r\nQUIT\r\n",
			want: dataResult{out: "a\r\n", err: io.EOF, rest: "MAIL FROM:<a@b>\r\nQUIT\r\n"}},
		{name: "empty line only", in: "\r\n.\r\n", want: dataResult{out: "\r\n", err: io.EOF}},
		{name: "stuffed dot", in: "a\r\n..b\r\n.\r\n", want: dataResult{out: "a\r\n.b\r\n", err: io.EOF}},
		{name: "stuffed dot line", in: "..\r\n.\r\n", want: dataResult{out: ".\r\n", err: io.EOF}},
		{name: "three dots", in: "...\r\n.\r\n", want: dataResult{out: "..\r\n", err: io.EOF}},
		{name: "unstuffed leading dot", in: "a\r\n.x\r\n.\r\n", want: dataResult{out: "a\r\nx\r\n", err: io.EOF}},
		{name: "dot mid line", in: "a.b\r\nc .\r\n.\r\n", want: dataResult{out: "a.b\r\nc .\r\n", err: io.EOF}},
		{name: "dot space line", in: ". \r\n.\r\n", want: dataResult{out: " \r\n", err: io.EOF}},
		{name: "binary bytes", in: "\x00\xff\t\x7f\r\n.\r\n", want: dataResult{out: "\x00\xff\t\x7f\r\n", err: io.EOF}},
		{name: "second marker stays", in: "a\r\n.\r\n.\r\n", want: dataResult{out: "a\r\n", err: io.EOF, rest: ".\r\n"}},

		// SMTP smuggling: none of these end the data; strict mode fails
		// after draining to the real end marker.
		{name: "LF.LF", in: "a\n.\n" + mail + "x\r\n.\r\nQUIT\r\n",
			want: dataResult{out: "a", err: ErrBareLineEnding, rest: "QUIT\r\n"}},
		{name: "CRLF.LF", in: "a\r\n.\n" + mail + "x\r\n.\r\nQUIT\r\n",
			want: dataResult{out: "a\r\n", err: ErrBareLineEnding, rest: "QUIT\r\n"}},
		{name: "LF.CRLF", in: "a\n.\r\n" + mail + "x\r\n.\r\nQUIT\r\n",
			want: dataResult{out: "a", err: ErrBareLineEnding, rest: "QUIT\r\n"}},
		{name: "CR.CR", in: "a\r.\r" + mail + "x\r\n.\r\nQUIT\r\n",
			want: dataResult{out: "a", err: ErrBareLineEnding, rest: "QUIT\r\n"}},
		{name: "CRLF.CR", in: "a\r\n.\r" + mail + "x\r\n.\r\nQUIT\r\n",
			want: dataResult{out: "a\r\n", err: ErrBareLineEnding, rest: "QUIT\r\n"}},
		{name: "CR.CRLF", in: "a\r.\r\n" + mail + "x\r\n.\r\nQUIT\r\n",
			want: dataResult{out: "a", err: ErrBareLineEnding, rest: "QUIT\r\n"}},
		{name: "start .LF", in: ".\n" + mail + ".\r\n",
			want: dataResult{err: ErrBareLineEnding}},
		{name: "start .CR", in: ".\r" + mail + ".\r\n",
			want: dataResult{err: ErrBareLineEnding}},
		{name: "CRCRLF.CRLF", in: "a\r\r\n.\r\nQUIT\r\n",
			want: dataResult{out: "a", err: ErrBareLineEnding, rest: "QUIT\r\n"}},
		{name: "bare CR mid line", in: "a\rb\r\n.\r\n", want: dataResult{out: "a", err: ErrBareLineEnding}},
		{name: "bare LF mid line", in: "ab\ncd\r\n.\r\n", want: dataResult{out: "ab", err: ErrBareLineEnding}},
		{name: "CRLF.CRCRLF", in: "a\r\n.\r\r\n.\r\n", want: dataResult{out: "a\r\n", err: ErrBareLineEnding}},

		// The same in fix mode: converted, unstuffed, never the end.
		{name: "fix LF.LF", in: "a\n.\n" + mail + "x\r\n.\r\nQUIT\r\n", opt: fix,
			want: dataResult{out: "a\r\n\r\n" + mail + "x\r\n", err: io.EOF, rest: "QUIT\r\n"}},
		{name: "fix CRLF.LF", in: "a\r\n.\n" + mail + "x\r\n.\r\nQUIT\r\n", opt: fix,
			want: dataResult{out: "a\r\n\r\n" + mail + "x\r\n", err: io.EOF, rest: "QUIT\r\n"}},
		{name: "fix LF.CRLF", in: "a\n.\r\n" + mail + "x\r\n.\r\nQUIT\r\n", opt: fix,
			want: dataResult{out: "a\r\n\r\n" + mail + "x\r\n", err: io.EOF, rest: "QUIT\r\n"}},
		{name: "fix CR.CR", in: "a\r.\r" + mail + "x\r\n.\r\nQUIT\r\n", opt: fix,
			want: dataResult{out: "a\r\n\r\n" + mail + "x\r\n", err: io.EOF, rest: "QUIT\r\n"}},
		{name: "fix CRLF.CR", in: "a\r\n.\r" + mail + "x\r\n.\r\nQUIT\r\n", opt: fix,
			want: dataResult{out: "a\r\n\r\n" + mail + "x\r\n", err: io.EOF, rest: "QUIT\r\n"}},
		{name: "fix CR.CRLF", in: "a\r.\r\n" + mail + "x\r\n.\r\nQUIT\r\n", opt: fix,
			want: dataResult{out: "a\r\n\r\n" + mail + "x\r\n", err: io.EOF, rest: "QUIT\r\n"}},
		{name: "fix start .LF", in: ".\nx\r\n.\r\n", opt: fix, want: dataResult{out: "\r\nx\r\n", err: io.EOF}},
		{name: "fix start LF", in: "\n.\r\n.\r\n", opt: fix, want: dataResult{out: "\r\n\r\n", err: io.EOF}},
		{name: "fix CRCRLF", in: "\r\r\n.\r\n", opt: fix, want: dataResult{out: "\r\n\r\n", err: io.EOF}},
		{name: "fix bare CR mid line", in: "a\rb\r\n.\r\n", opt: fix, want: dataResult{out: "a\r\nb\r\n", err: io.EOF}},
		{name: "fix bare LF stuffed", in: "a\n..b\n.\r\n.\r\n", opt: fix,
			want: dataResult{out: "a\r\n.b\r\n\r\n", err: io.EOF}},
		{name: "fix CRLF.CRCRLF", in: "a\r\n.\r\r\n.\r\n", opt: fix, want: dataResult{out: "a\r\n\r\n\r\n", err: io.EOF}},
		{name: "fix LFCR", in: "a\n\rb\r\n.\r\n", opt: fix, want: dataResult{out: "a\r\n\r\nb\r\n", err: io.EOF}},
		{name: "fix only LF endings", in: "a\nb\n.\n", opt: fix,
			want: dataResult{out: "a\r\nb\r\n\r\n", err: io.ErrUnexpectedEOF}},

		// The connection ends before the end marker.
		{name: "eof empty", in: "", want: dataResult{err: io.ErrUnexpectedEOF}},
		{name: "eof mid line", in: "a\r\nb", want: dataResult{out: "a\r\nb", err: io.ErrUnexpectedEOF}},
		{name: "eof after dot CR", in: "a\r\n.\r", want: dataResult{out: "a\r\n", err: io.ErrUnexpectedEOF}},
		{name: "eof after bare LF", in: "a\n.\n", want: dataResult{out: "a", err: io.ErrUnexpectedEOF}},

		// Limits.
		{name: "size exact", in: "12345\r\n.\r\n", opt: DataReaderOptions{MaxSize: 7},
			want: dataResult{out: "12345\r\n", err: io.EOF}},
		{name: "size over in text", in: "1234567\r\n.\r\nQUIT\r\n", opt: DataReaderOptions{MaxSize: 5},
			want: dataResult{out: "12345", err: ErrTooBig, rest: "QUIT\r\n"}},
		{name: "size over in line ending", in: "12345\r\n.\r\n", opt: DataReaderOptions{MaxSize: 6},
			want: dataResult{out: "12345", err: ErrTooBig}},
		{name: "size counts unstuffed", in: "..\r\n.\r\n", opt: DataReaderOptions{MaxSize: 3},
			want: dataResult{out: ".\r\n", err: io.EOF}},
		{name: "size counts fixed endings", in: "a\nb\n\r\n.\r\n", opt: DataReaderOptions{MaxSize: 7, FixBareLineEndings: true},
			want: dataResult{out: "a\r\nb\r\n", err: ErrTooBig}},
		{name: "header exact", in: "Subject: x\r\n\r\nlong body line\r\n.\r\n", opt: DataReaderOptions{MaxHeaderSize: 12},
			want: dataResult{out: "Subject: x\r\n\r\nlong body line\r\n", err: io.EOF}},
		{name: "header over", in: "Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n", opt: DataReaderOptions{MaxHeaderSize: 10},
			want: dataResult{out: "Subject: x", err: ErrHeaderTooBig, rest: "QUIT\r\n"}},
		{name: "header over at line ending", in: "Subject: x\r\n\r\nbody\r\n.\r\n", opt: DataReaderOptions{MaxHeaderSize: 11},
			want: dataResult{out: "Subject: x", err: ErrHeaderTooBig}},
		{name: "header without empty line", in: "abcdefghijkl\r\n.\r\n", opt: DataReaderOptions{MaxHeaderSize: 10},
			want: dataResult{out: "abcdefghij", err: ErrHeaderTooBig}},
		{name: "header empty", in: "\r\n0123456789abcdef\r\n.\r\n", opt: DataReaderOptions{MaxHeaderSize: 1},
			want: dataResult{out: "\r\n0123456789abcdef\r\n", err: io.EOF}},
		{name: "header ended by fixed bare LF", in: "ab\n\nlong body\r\n.\r\n", opt: DataReaderOptions{MaxHeaderSize: 4, FixBareLineEndings: true},
			want: dataResult{out: "ab\r\n\r\nlong body\r\n", err: io.EOF}},
		{name: "first failure wins size", in: "abc\n\r\n.\r\n", opt: DataReaderOptions{MaxSize: 2},
			want: dataResult{out: "ab", err: ErrTooBig}},
		{name: "first failure wins bare", in: "a\nbcdef\r\n.\r\n", opt: DataReaderOptions{MaxSize: 3},
			want: dataResult{out: "a", err: ErrBareLineEnding}},
		{name: "failure then eof", in: "a\nb", want: dataResult{out: "a", err: io.ErrUnexpectedEOF}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, oneByte := range []bool{false, true} {
				for _, outSize := range []int{1, 3, 4096} {
					got := runDataReader(t, tt.in, tt.opt, oneByte, outSize)
					// Before a failure the reader returns what it had
					// written so far; that too must not depend on chunking.
					if got.out != tt.want.out || !errors.Is(got.err, tt.want.err) || got.rest != tt.want.rest {
						t.Errorf("oneByteIn=%v outSize=%d: got out=%q err=%v rest=%q\nwant out=%q err=%v rest=%q",
							oneByte, outSize, got.out, got.err, got.rest, tt.want.out, tt.want.err, tt.want.rest)
					}
				}
			}
		})
	}
}

// errAfterReader returns its data, then err.
type errAfterReader struct {
	data []byte
	err  error
}

func (r *errAfterReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestDataReaderIOError(t *testing.T) {
	boom := errors.New("boom")
	for _, opt := range []DataReaderOptions{{}, {FixBareLineEndings: true}} {
		br := bufio.NewReader(&errAfterReader{data: []byte("abc\r\nd\ne"), err: boom})
		dr := NewDataReader(br, opt)
		got, err := io.ReadAll(dr)
		if !errors.Is(err, boom) {
			t.Errorf("fix=%v: ReadAll error = %v, want %v", opt.FixBareLineEndings, err, boom)
		}
		want := "abc\r\nd\r\ne"
		if !opt.FixBareLineEndings {
			want = "abc\r\nd"
		}
		if string(got) != want {
			t.Errorf("fix=%v: content = %q, want %q", opt.FixBareLineEndings, got, want)
		}
		if _, err := dr.Read(make([]byte, 10)); err != boom {
			t.Errorf("fix=%v: Read after the error = %v, want it again", opt.FixBareLineEndings, err)
		}
	}
}

// TestDataReaderDoesNotHold checks that Read returns the content it has
// instead of blocking for more input, and does not read past the marker.
func TestDataReaderDoesNotHold(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	br := bufio.NewReader(pr)
	dr := NewDataReader(br, DataReaderOptions{})
	type result struct {
		s   string
		err error
	}
	results := make(chan result)
	go func() {
		buf := make([]byte, 100)
		for {
			n, err := dr.Read(buf)
			results <- result{string(buf[:n]), err}
			if err != nil {
				return
			}
		}
	}()
	next := func() result {
		t.Helper()
		select {
		case r := <-results:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("Read blocked while holding content")
		}
		return result{}
	}
	writes := make(chan error, 1)
	go func() {
		if _, err := pw.Write([]byte("line one\r\n")); err != nil {
			writes <- err
			return
		}
		writes <- nil
	}()
	if r := next(); r.s != "line one\r\n" || r.err != nil {
		t.Fatalf("first Read = %q, %v; want %q, nil", r.s, r.err, "line one\r\n")
	}
	if err := <-writes; err != nil {
		t.Fatal(err)
	}
	go func() {
		_, err := pw.Write([]byte(".\r\nQUIT\r\n"))
		writes <- err
	}()
	if r := next(); r.s != "" || r.err != io.EOF {
		t.Fatalf("second Read = %q, %v; want \"\", EOF", r.s, r.err)
	}
	if err := <-writes; err != nil {
		t.Fatal(err)
	}
	line, err := br.ReadString('\n')
	if line != "QUIT\r\n" || err != nil {
		t.Errorf("after the data the session reads %q, %v; want %q", line, err, "QUIT\r\n")
	}
}

// referenceData is a slow, obvious model of the DATA rules: it returns the
// end of the end marker (-1 if none), the content the reader must return
// for a clean end in fix mode (or strict mode without bare endings), and
// whether the content holds a bare CR or LF.
func referenceData(in []byte) (end int, content []byte, bare bool) {
	switch {
	case bytes.HasPrefix(in, []byte(".\r\n")):
		return 3, nil, false
	case bytes.Contains(in, []byte("\r\n.\r\n")):
		end = bytes.Index(in, []byte("\r\n.\r\n")) + 5
	default:
		return -1, nil, false
	}
	raw := in[:end-3] // lines with their endings, without ".\r\n"
	var norm []byte
	for i := 0; i < len(raw); i++ {
		switch {
		case raw[i] == '\r' && i+1 < len(raw) && raw[i+1] == '\n':
			norm = append(norm, '\r', '\n')
			i++
		case raw[i] == '\r' || raw[i] == '\n':
			norm = append(norm, '\r', '\n')
			bare = true
		default:
			norm = append(norm, raw[i])
		}
	}
	lines := bytes.Split(norm, []byte("\r\n"))
	for i, l := range lines {
		lines[i] = bytes.TrimPrefix(l, []byte("."))
	}
	return end, bytes.Join(lines, []byte("\r\n")), bare
}

// headerSize is the size of the header section of content.
func headerSize(content []byte) int {
	if bytes.HasPrefix(content, []byte("\r\n")) {
		return 0
	}
	if i := bytes.Index(content, []byte("\r\n\r\n")); i >= 0 {
		return i + 2
	}
	return len(content)
}

func TestReferenceData(t *testing.T) {
	end, content, bare := referenceData([]byte("a\n..b\n.\r\n.\r\nX"))
	if end != 12 || string(content) != "a\r\n.b\r\n\r\n" || !bare {
		t.Errorf("referenceData = %d, %q, %v", end, content, bare)
	}
}

func FuzzDataReader(f *testing.F) {
	for _, s := range []string{
		"Subject: a\r\n\r\nbody\r\n.\r\n", ".\r\n", ".\r\nQUIT\r\n", "a\r\n..b\r\n.\r\n",
		"a\n.\nMAIL FROM:<a@b>\r\n.\r\n", "a\r\n.\nx\r\n.\r\n", "a\n.\r\nx\r\n.\r\n", "a\r.\rx\r\n.\r\n",
		"a\r\n.\rx\r\n.\r\n", "\r\r\n.\r\n", "a\r\n.\r\r\n.\r\n", "a\nb", "abc", "..\r\n.\r\n",
		"Subject: " + strings.Repeat("x", 100) + "\r\n\r\n" + strings.Repeat("body\r\n", 20) + ".\r\nQUIT\r\n",
	} {
		f.Add([]byte(s), false, uint16(0), uint16(0), uint8(0))
		f.Add([]byte(s), true, uint16(10), uint16(8), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, fix bool, maxSize, maxHeader uint16, outSize uint8) {
		opt := DataReaderOptions{MaxSize: int64(maxSize), MaxHeaderSize: int64(maxHeader), FixBareLineEndings: fix}
		whole := runDataReader(t, string(in), opt, false, 4096)
		split := runDataReader(t, string(in), opt, true, int(outSize)%7+1)
		if whole.out != split.out || whole.err != split.err || whole.rest != split.rest {
			t.Fatalf("chunking changes the result:\nwhole: %q %v %q\nsplit: %q %v %q",
				whole.out, whole.err, whole.rest, split.out, split.err, split.rest)
		}
		got := whole
		end, content, bare := referenceData(in)
		if end < 0 {
			if got.err != io.ErrUnexpectedEOF || got.rest != "" {
				t.Fatalf("no end marker in %q but err=%v rest=%q", in, got.err, got.rest)
			}
			if fix && opt.MaxSize == 0 && opt.MaxHeaderSize == 0 && bytes.ContainsAny([]byte(got.out), "\r\n") {
				checkNoBare(t, got.out, true)
			}
			return
		}
		if got.rest != string(in[end:]) {
			t.Fatalf("consumed up to %d, want %d (end marker) in %q", len(in)-len(got.rest), end, in)
		}
		if opt.MaxSize > 0 && int64(len(got.out)) > opt.MaxSize {
			t.Fatalf("returned %d bytes, more than MaxSize %d", len(got.out), opt.MaxSize)
		}
		if fix {
			checkNoBare(t, got.out, false)
		}
		tooBig := opt.MaxSize > 0 && int64(len(content)) > opt.MaxSize
		headerTooBig := opt.MaxHeaderSize > 0 && int64(headerSize(content)) > opt.MaxHeaderSize
		strictBare := !fix && bare
		switch got.err {
		case io.EOF:
			if tooBig || headerTooBig || strictBare {
				t.Fatalf("clean end for %q, want a failure (tooBig=%v headerTooBig=%v bare=%v)", in, tooBig, headerTooBig, strictBare)
			}
			if got.out != string(content) {
				t.Fatalf("content of %q:\n got %q\nwant %q", in, got.out, content)
			}
		case ErrTooBig:
			if !tooBig {
				t.Fatalf("ErrTooBig for %q (%d bytes, max %d)", in, len(content), opt.MaxSize)
			}
		case ErrHeaderTooBig:
			if !headerTooBig {
				t.Fatalf("ErrHeaderTooBig for %q (header %d, max %d)", in, headerSize(content), opt.MaxHeaderSize)
			}
		case ErrBareLineEnding:
			if !strictBare {
				t.Fatalf("ErrBareLineEnding for %q (fix=%v bare=%v)", in, fix, bare)
			}
		default:
			t.Fatalf("unexpected error %v for %q", got.err, in)
		}
		if !strings.HasPrefix(string(content), got.out) {
			t.Fatalf("output %q before the failure is not a prefix of the content %q", got.out, content)
		}
	})
}

// checkNoBare fails if s has a CR not followed by LF or an LF not after
// CR; partial allows a final CR (the end of a cut-off stream).
func checkNoBare(t *testing.T, s string, partial bool) {
	t.Helper()
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
				continue
			}
			if partial && i+1 == len(s) {
				continue
			}
			t.Fatalf("bare CR at %d in fix-mode output %q", i, s)
		case '\n':
			t.Fatalf("bare LF at %d in fix-mode output %q", i, s)
		}
	}
}

func BenchmarkDataReader(b *testing.B) {
	for _, fixMode := range []bool{false, true} {
		b.Run(fmt.Sprintf("fix=%v", fixMode), func(b *testing.B) {
			msg := benchMessage(10 << 10)
			opt := DataReaderOptions{MaxSize: 50 << 20, MaxHeaderSize: 64 << 10, FixBareLineEndings: fixMode}
			rd := bytes.NewReader(msg)
			br := bufio.NewReaderSize(rd, 4096)
			buf := make([]byte, 32<<10)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				rd.Reset(msg)
				br.Reset(rd)
				dr := NewDataReader(br, opt)
				for {
					_, err := dr.Read(buf)
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// benchMessage is a message of about size bytes in 76-character lines,
// dot-stuffed, with the end marker.
func benchMessage(size int) []byte {
	var m bytes.Buffer
	m.WriteString("From: a@example.com\r\nTo: b@example.com\r\nSubject: benchmark\r\n\r\n")
	line := strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789", 3)[:76]
	for i := 0; m.Len() < size; i++ {
		if i%20 == 0 {
			m.WriteString("." + line[1:] + "\r\n")
			continue
		}
		m.WriteString(line + "\r\n")
	}
	m.WriteString(".\r\n")
	return m.Bytes()
}
