package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestSendComposesHeaders(t *testing.T) {
	dir := t.TempDir()
	addr, stop := startSink(t, "--save", dir)
	code, out, errOut := runWithInput(t, "Just a note.\nSecond line: not a header.\n",
		"send", "--server", addr, "--from", "a@x.test", "--to", "b@y.test, c@y.test", "--subject", "Grüße")
	if code != 0 {
		t.Fatalf("send: code %d, stderr %q", code, errOut)
	}
	id := regexp.MustCompile(`queued as (\S+)`).FindStringSubmatch(out)
	if id == nil {
		t.Fatalf("send printed %q", out)
	}
	eml, err := os.ReadFile(filepath.Join(dir, id[1]+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	_, msg, _ := strings.Cut(string(eml), "\r\nFrom: ") // after the Received header
	msg = "From: " + msg
	header, body, ok := strings.Cut(msg, "\r\n\r\n")
	if !ok || body != "Just a note.\r\nSecond line: not a header.\r\n" {
		t.Fatalf("composed message %q: body not kept", msg)
	}
	for _, re := range []string{
		`(?m)^From: a@x\.test\r$`,
		`(?m)^To: b@y\.test, c@y\.test\r$`,
		`(?m)^Subject: =\?utf-8\?q\?Gr=C3=BC=C3=9Fe\?=\r$`,
		`(?m)^Date: \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [-+]\d{4}\r$`,
		`(?m)^Message-ID: <[0-9a-f]{24}@x\.test>\r$`,
	} {
		if !regexp.MustCompile(re).MatchString(header + "\r\n") {
			t.Errorf("composed header %q does not match %s", header, re)
		}
	}
	stop()
}

func TestSendUsage(t *testing.T) {
	for _, args := range [][]string{
		{"send", "--to", "b@y.test"},
		{"send", "--from", "a@x.test"},
		{"send", "--from", "a@x.test", "--to", "b@y.test", "one", "two"},
	} {
		if code, _, _ := runWithInput(t, "", args...); code != 2 {
			t.Errorf("%q: code %d, want 2", args, code)
		}
	}
	code, _, errOut := runWithInput(t, "", "send", "--from", "not an address", "--to", "b@y.test")
	if code != 1 || !strings.Contains(errOut, "--from") {
		t.Errorf("bad --from: code %d, stderr %q", code, errOut)
	}
}

func TestHasHeader(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"Subject: x\n\nbody", true},
		{"X-Custom:x\n", true},
		{"Hello there: not a header\n", false},
		{": empty name\n", false},
		{"just text\n", false},
		{"", false},
		{"\nSubject: x", false},
	} {
		if got := hasHeader([]byte(tc.in)); got != tc.want {
			t.Errorf("hasHeader(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestToCRLF(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"a", "a\r\n"},
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\r\nb", "a\r\nb\r\n"},
		{"a\rb\r\n\n", "a\r\nb\r\n\r\n"},
	} {
		if got := string(toCRLF([]byte(tc.in))); got != tc.want {
			t.Errorf("toCRLF(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
