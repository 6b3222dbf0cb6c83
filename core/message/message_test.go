package message_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/message"
	"github.com/mailgate/gateway/sdk"
)

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name    string
		msg     string
		want    []sdk.HeaderField
		wantLen int
	}{
		{
			name:    "simple",
			msg:     "Subject: hi\r\nFrom: a@b\r\n\r\nbody\r\n",
			want:    []sdk.HeaderField{{Name: "Subject", Value: "hi"}, {Name: "From", Value: "a@b"}},
			wantLen: len("Subject: hi\r\nFrom: a@b\r\n\r\n"),
		},
		{
			name:    "folded",
			msg:     "Subject: one\r\n two\r\n\tthree\r\nX: y\r\n\r\n",
			want:    []sdk.HeaderField{{Name: "Subject", Value: "one two\tthree"}, {Name: "X", Value: "y"}},
			wantLen: len("Subject: one\r\n two\r\n\tthree\r\nX: y\r\n\r\n"),
		},
		{
			name:    "blank before colon and empty value",
			msg:     "Received \t: a\r\nX-Empty:\r\n\r\n",
			want:    []sdk.HeaderField{{Name: "Received", Value: "a"}, {Name: "X-Empty", Value: ""}},
			wantLen: len("Received \t: a\r\nX-Empty:\r\n\r\n"),
		},
		{
			name:    "bare LF",
			msg:     "A: 1\nB: 2\n\nbody\n",
			want:    []sdk.HeaderField{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}},
			wantLen: len("A: 1\nB: 2\n\n"),
		},
		{
			name:    "non-field line starts the body",
			msg:     "A: 1\r\nnot a field\r\nB: 2\r\n\r\n",
			want:    []sdk.HeaderField{{Name: "A", Value: "1"}},
			wantLen: len("A: 1\r\n"),
		},
		{
			// As Python's email package reads it: a reader downstream
			// sees the fields after the line, so the checks must.
			name: "empty name is a field",
			msg:  "A: 1\r\n: x\r\n:\r\n \ty\r\nFrom: a@b\r\n\r\n",
			want: []sdk.HeaderField{{Name: "A", Value: "1"}, {Name: "", Value: "x"}, {Name: "", Value: "y"},
				{Name: "From", Value: "a@b"}},
			wantLen: len("A: 1\r\n: x\r\n:\r\n \ty\r\nFrom: a@b\r\n\r\n"),
		},
		{
			name:    "no header section",
			msg:     "\r\nbody\r\n",
			want:    nil,
			wantLen: 2,
		},
		{
			name:    "continuation first is body",
			msg:     " x: y\r\n\r\n",
			want:    nil,
			wantLen: 0,
		},
		{
			name:    "header only, no empty line",
			msg:     "A: 1\r\nB: 2",
			want:    []sdk.HeaderField{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}},
			wantLen: len("A: 1\r\nB: 2"),
		},
		{
			name:    "empty",
			msg:     "",
			want:    nil,
			wantLen: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n, err := message.ParseHeader(strings.NewReader(tt.msg))
			if err != nil {
				t.Fatalf("ParseHeader: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
			if n != int64(tt.wantLen) {
				t.Errorf("header length %d; want %d", n, tt.wantLen)
			}
			// One byte a read gives the same answer.
			got2, n2, err := message.ParseHeader(iotest.OneByteReader(strings.NewReader(tt.msg)))
			if err != nil || n2 != n || !cmp.Equal(got, got2) {
				t.Errorf("one byte a read: %v, %d, %v; want %v, %d", got2, n2, err, got, n)
			}
		})
	}
}

func TestParseHeaderLongLine(t *testing.T) {
	long := "X-Long: " + strings.Repeat("a", message.MaxLine) + "\r\n"
	msg := "A: 1\r\n" + long + "\r\nbody"
	got, n, err := message.ParseHeader(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if want := []sdk.HeaderField{{Name: "A", Value: "1"}}; !cmp.Equal(got, want) || n != 6 {
		t.Errorf("got %v, %d; want %v, 6 (the long line starts the body)", got, n, want)
	}
}

func TestParseHeaderReadError(t *testing.T) {
	boom := errors.New("boom")
	_, _, err := message.ParseHeader(io.MultiReader(strings.NewReader("A: 1\r\n"), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) {
		t.Errorf("err %v; want boom", err)
	}
}

func TestRewrite(t *testing.T) {
	tests := []struct {
		name   string
		msg    string
		add    []sdk.HeaderField
		remove []string
		want   string
	}{
		{
			name: "nothing",
			msg:  "A: 1\r\n\r\nbody\r\n",
			want: "A: 1\r\n\r\nbody\r\n",
		},
		{
			name: "add first",
			msg:  "A: 1\r\n\r\nbody\r\n",
			add:  []sdk.HeaderField{{Name: "X-New", Value: "v"}, {Name: "Bad Name", Value: "x"}, {Name: "X-CRLF", Value: "a\r\nb"}},
			want: "X-New: v\r\nX-CRLF: a  b\r\nA: 1\r\n\r\nbody\r\n",
		},
		{
			name:   "remove every occurrence, any case, with continuations",
			msg:    "Received: a\r\nX-Spam: 1\r\n more\r\nSubject: s\r\nx-spam: 2\r\nX-Spam-Score: 3\r\n\r\nX-Spam: in body\r\n",
			remove: []string{"X-SPAM"},
			want:   "Received: a\r\nSubject: s\r\nX-Spam-Score: 3\r\n\r\nX-Spam: in body\r\n",
		},
		{
			name:   "remove with blank before colon",
			msg:    "Bcc : x\r\nTo: y\r\n\r\n",
			remove: []string{"bcc"},
			want:   "To: y\r\n\r\n",
		},
		{
			name:   "add and remove",
			msg:    "DKIM-Signature: v=1;\r\n\tb=abc\r\nSubject: s\r\n\r\nbody",
			add:    []sdk.HeaderField{{Name: "X-Gateway", Value: "yes"}},
			remove: []string{"dkim-signature"},
			want:   "X-Gateway: yes\r\nSubject: s\r\n\r\nbody",
		},
		{
			name:   "bare line endings become CRLF",
			msg:    "A: 1\nB: 2\r\n\nline\rnext\n",
			remove: []string{"b"},
			want:   "A: 1\r\n\r\nline\r\nnext\r\n",
		},
		{
			name: "CR at the very end",
			msg:  "A: 1\r\n\r\nbody\r",
			want: "A: 1\r\n\r\nbody\r\n",
		},
		{
			name:   "non-field line ends the header",
			msg:    "A: 1\r\nFrom me\r\nA: 2\r\n",
			remove: []string{"a"},
			want:   "From me\r\nA: 2\r\n",
		},
		{
			name:   "a field below one with an empty name is removed",
			msg:    "A: 1\r\n: x\r\nAuthentication-Results: forged\r\n\r\nbody\r\n",
			remove: []string{"authentication-results"},
			want:   "A: 1\r\n: x\r\n\r\nbody\r\n",
		},
		{
			name: "an empty line goes before the body's first line",
			msg:  "A: 1\r\nB: 2\r\nFrom me\r\n",
			add:  []sdk.HeaderField{{Name: "X", Value: "y"}},
			want: "X: y\r\nA: 1\r\nB: 2\r\n\r\nFrom me\r\n",
		},
		{
			name:   "a continuation with nothing to continue stays in the body",
			msg:    " \nA: 1\n",
			add:    []sdk.HeaderField{{Name: "X", Value: "y"}},
			remove: []string{"a"},
			want:   "X: y\r\n\r\n \r\nA: 1\r\n",
		},
		{
			name:   "no header section",
			msg:    "\r\nA: 1\r\n",
			remove: []string{"a"},
			want:   "\r\nA: 1\r\n",
		},
		{
			name: "empty",
			msg:  "",
			add:  []sdk.HeaderField{{Name: "A", Value: "1"}},
			want: "A: 1\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := message.Rewrite(&b, strings.NewReader(tt.msg), tt.add, tt.remove); err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
			b.Reset()
			if err := message.Rewrite(&b, iotest.OneByteReader(strings.NewReader(tt.msg)), tt.add, tt.remove); err != nil {
				t.Fatalf("Rewrite, one byte a read: %v", err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("one byte a read: got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestRewriteLarge(t *testing.T) {
	body := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 1<<14) // 1 MiB
	msg := "X-Drop: 1\r\nSubject: big\r\n\r\n" + body
	var b bytes.Buffer
	if err := message.Rewrite(&b, strings.NewReader(msg), nil, []string{"x-drop"}); err != nil {
		t.Fatal(err)
	}
	if want := "Subject: big\r\n\r\n" + body; b.String() != want {
		t.Errorf("got %d bytes; want %d", b.Len(), len(want))
	}
}

func TestRewriteWriteError(t *testing.T) {
	boom := errors.New("boom")
	w := &failWriter{after: 3, err: boom}
	err := message.Rewrite(w, strings.NewReader("A: 1\r\nB: 2\r\n\r\n"+strings.Repeat("x\n", 100)), nil, nil)
	if !errors.Is(err, boom) {
		t.Errorf("err %v; want boom", err)
	}
}

type failWriter struct {
	after int
	err   error
}

func (w *failWriter) Write(p []byte) (int, error) {
	if w.after == 0 {
		return 0, w.err
	}
	w.after--
	return len(p), nil
}

func TestView(t *testing.T) {
	msg := "Subject: hi\r\nX-A: 1\r\n 2\r\n\r\nline one\r\nline two\r\n"
	opens := 0
	open := func() (io.ReadCloser, error) {
		opens++
		return io.NopCloser(strings.NewReader(msg)), nil // not a Seeker
	}
	v := message.NewView(int64(len(msg)), open)
	if opens != 0 {
		t.Fatalf("NewView opened the message")
	}
	if v.Size() != int64(len(msg)) {
		t.Errorf("Size %d; want %d", v.Size(), len(msg))
	}
	h, err := v.Header()
	if err != nil {
		t.Fatal(err)
	}
	want := []sdk.HeaderField{{Name: "Subject", Value: "hi"}, {Name: "X-A", Value: "1 2"}}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	h[0].Value = "changed"
	if h2, _ := v.Header(); h2[0].Value != "hi" {
		t.Errorf("Header returned the view's own slice")
	}
	if sh, err := v.SharedHeader(); err != nil || !cmp.Equal(sh, want) {
		t.Errorf("SharedHeader = %v, %v; want %v", sh, err, want)
	}
	if n := testing.AllocsPerRun(10, func() { _, _ = v.SharedHeader() }); n != 0 {
		t.Errorf("SharedHeader made %v allocations; want 0 (no copy)", n)
	}
	for _, tc := range []struct {
		limit int
		want  string
	}{{0, "line one\r\nline two\r\n"}, {-1, "line one\r\nline two\r\n"}, {4, "line"}, {1000, "line one\r\nline two\r\n"}} {
		b, err := v.Body(tc.limit)
		if err != nil || string(b) != tc.want {
			t.Errorf("Body(%d) = %q, %v; want %q", tc.limit, b, err, tc.want)
		}
	}
	if opens != 5 { // the header once, then once a Body call
		t.Errorf("%d opens; want 5", opens)
	}
}

func TestViewSeeker(t *testing.T) {
	msg := "A: 1\r\n\r\nbody"
	v := message.NewView(int64(len(msg)), func() (io.ReadCloser, error) {
		return struct {
			io.ReadSeeker
			io.Closer
		}{strings.NewReader(msg), io.NopCloser(nil)}, nil
	})
	if b, err := v.Body(0); err != nil || string(b) != "body" {
		t.Errorf("Body = %q, %v; want body", b, err)
	}
}

func TestViewOpenError(t *testing.T) {
	boom := errors.New("boom")
	v := message.NewView(10, func() (io.ReadCloser, error) { return nil, boom })
	if _, err := v.Header(); !errors.Is(err, boom) {
		t.Errorf("Header err %v; want boom", err)
	}
	if _, err := v.Body(10); !errors.Is(err, boom) {
		t.Errorf("Body err %v; want boom", err)
	}
}

// FuzzRewrite checks that parsing never panics, that the output has CRLF
// line endings only, that a rewrite without changes keeps every byte but
// line breaks, and that removed fields are gone from the parsed output.
func FuzzRewrite(f *testing.F) {
	f.Add("Subject: hi\r\nX-A: 1\r\n 2\r\n\r\nbody\r\n", "x-a", "X-New", "v")
	f.Add("A: 1\nB: 2\n\nline\rnext\n", "b", "C", "a\r\nb")
	f.Add("\r\nA: 1\r\n", "a", "", "")
	f.Add("From me\r\nA: 2\r\n\r", "from", "Bad Name", "x")
	f.Add(" cont\r\nA :\r\n\r\n", "A", "A", "")
	f.Add("A: 1\r\n: x\r\n \r\nB: 2\r\n\r\n", "b", "", "")
	f.Fuzz(func(t *testing.T, msg, remove, addName, addValue string) {
		fields, n, err := message.ParseHeader(strings.NewReader(msg))
		if err != nil {
			t.Fatalf("ParseHeader: %v", err)
		}
		if n < 0 || n > int64(len(msg)) {
			t.Fatalf("header length %d out of 0..%d", n, len(msg))
		}
		for _, f := range fields {
			if strings.ContainsAny(f.Value, "\r\n") {
				t.Errorf("value %q has a line break", f.Value)
			}
		}

		var out bytes.Buffer
		add := []sdk.HeaderField{{Name: addName, Value: addValue}}
		if err := message.Rewrite(&out, strings.NewReader(msg), add, []string{remove}); err != nil {
			t.Fatalf("Rewrite: %v", err)
		}
		checkCRLF(t, out.Bytes())
		rm := strings.TrimSpace(remove)
		if !strings.EqualFold(addName, rm) {
			got, _, _ := message.ParseHeader(bytes.NewReader(out.Bytes()))
			for _, f := range got {
				if strings.EqualFold(f.Name, rm) {
					t.Errorf("%q: field %q is still there after removing %q:\n%q", msg, f.Name, remove, out.String())
				}
			}
		}

		out.Reset()
		if err := message.Rewrite(&out, strings.NewReader(msg), nil, nil); err != nil {
			t.Fatalf("Rewrite: %v", err)
		}
		checkCRLF(t, out.Bytes())
		if got, want := stripBreaks(out.String()), stripBreaks(msg); got != want {
			t.Errorf("a rewrite without changes changed the content:\n%q\n%q", msg, out.String())
		}
	})
}

func checkCRLF(t *testing.T, b []byte) {
	t.Helper()
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			t.Fatalf("bare LF at %d in %q", i, b)
		}
		if c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
			t.Fatalf("bare CR at %d in %q", i, b)
		}
	}
}

func stripBreaks(s string) string {
	return strings.NewReplacer("\r", "", "\n", "").Replace(s)
}

func TestReplacement(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"A: 1\r\n\r\nbody\r\n", "A: 1\r\n\r\nbody\r\n"},
		{"A: 1\n\nbody", "A: 1\r\n\r\nbody\r\n"},
		{"A: 1\r\n\r\nbody\r", "A: 1\r\n\r\nbody\r\n"},
	} {
		var b bytes.Buffer
		if err := message.Rewrite(&b, message.Replacement([]byte(tc.in)), nil, nil); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("Replacement(%q) rewritten = %q; want %q", tc.in, b.String(), tc.want)
		}
	}
}

func TestHeaderEndsClean(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"From: a@b\r\n\r\nbody\r\n", true},
		{"From: a@b\n\nbody\n", true},
		{"From: a@b\r\n", true},
		{"", true},
		{"From: a@b\r\nbogus line\r\nX: y\r\n\r\n", false},
		{"From: a@b\r\nX-Long: " + strings.Repeat("x", message.MaxLine+10) + "\r\n\r\n", false},
		{": empty name is a field\r\n\r\n", true},
	}
	for _, tt := range tests {
		v := message.NewView(int64(len(tt.in)), func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(tt.in)), nil })
		got, err := v.HeaderEndsClean()
		if err != nil || got != tt.want {
			t.Errorf("HeaderEndsClean(%.40q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

// BenchmarkParseHeader is the header parse a hook's first look at the
// message costs: a small header section (the accept benchmarks') and
// one as received mail has it (trace fields, a folded DKIM signature).
func BenchmarkParseHeader(b *testing.B) {
	small := "From: sender@example.org\r\nTo: user1@example.test\r\nSubject: benchmark\r\nMessage-ID: <bench@example.org>\r\n\r\n"
	var large strings.Builder
	for i := range 6 {
		fmt.Fprintf(&large, "Received: from relay%d.example.net (relay%d.example.net [192.0.2.%d])\r\n\tby mx.example.test with ESMTPS id 4Xyz%d\r\n\tfor <user1@example.test>; Mon, 7 Dec 2026 01:00:0%d +0000\r\n", i, i, i, i, i)
	}
	large.WriteString("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=sel;\r\n\th=from:to:subject:date:message-id; bh=" + strings.Repeat("A", 44) + ";\r\n\tb=" + strings.Repeat("B", 76) + "\r\n\t " + strings.Repeat("C", 76) + "\r\n\t " + strings.Repeat("D", 190) + "\r\n")
	large.WriteString(small)
	body := strings.Repeat(strings.Repeat("x", 76)+"\r\n", 24)
	for _, bc := range []struct{ name, msg string }{{"small", small + body}, {"received", large.String() + body}} {
		b.Run(bc.name, func(b *testing.B) {
			msg := []byte(bc.msg)
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				v := message.NewView(int64(len(msg)), func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(msg)), nil })
				if h, err := v.HeaderEndsClean(); err != nil || !h {
					b.Fatal(h, err)
				}
			}
		})
	}
}
