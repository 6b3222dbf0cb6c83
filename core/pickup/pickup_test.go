package pickup

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/envelope"
)

func testEnvelope() *Envelope {
	return &Envelope{
		Sender: envelope.Address{Local: "alice", Domain: "example.test"},
		Recipients: []envelope.Recipient{
			{Address: envelope.Address{Local: "bob", Domain: "example.test"}, Notify: envelope.NotifySuccess | envelope.NotifyFailure, ORCPT: "rfc822;bob@example.test"},
			{Address: envelope.Address{Local: "carol", Domain: "other.test"}},
		},
		Ret:   envelope.RetHdrs,
		EnvID: "abc123",
		Body:  envelope.Body8BitMIME,
		UID:   4242,
	}
}

func prepared(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data", "pickup")
	if err := Prepare(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestWriteOpen: what Write stores, Open reads back, with the file
// owner's uid instead of the one the file claims.
func TestWriteOpen(t *testing.T) {
	dir := prepared(t)
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode() & (os.ModePerm | os.ModeSticky); got != Mode {
		t.Errorf("pickup dir mode %v, want %v", got, Mode)
	}
	msg := "Subject: hi\n\nbody\n"
	name, err := Write(dir, testEnvelope(), strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	names, err := List(dir)
	if err != nil || len(names) != 1 || names[0] != name {
		t.Fatalf("List = %v, %v; want [%s]", names, err, name)
	}
	m, err := Open(dir, name, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := testEnvelope() // the file is the reader's own: its uid stands
	if diff := cmp.Diff(want, m.Env); diff != "" {
		t.Errorf("envelope (-want +got):\n%s", diff)
	}
	for range 2 {
		body, _ := io.ReadAll(m.Body())
		if string(body) != msg {
			t.Errorf("body %q, want %q", body, msg)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, name))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("file mode %v, %v; want 0644", fi.Mode(), err)
	}
}

// TestOpenRefuses: what a local user could plant in the directory is
// refused, and Fail moves it away.
func TestOpenRefuses(t *testing.T) {
	dir := prepared(t)
	good, err := Write(dir, testEnvelope(), strings.NewReader("x\n"))
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte(magic+"\nuid 0\nsender <>\nrcpt <a@b.test>\n\nsecret\n"), 0o600)
	cases := map[string]func(path string) error{
		"symlink":   func(p string) error { return os.Symlink(secret, p) },
		"hard link": func(p string) error { return os.Link(secret, p) },
		"fifo":      func(p string) error { return syscall.Mkfifo(p, 0o644) },
		"directory": func(p string) error { return os.Mkdir(p, 0o755) },
		"socket":    func(p string) error { return syscall.Mknod(p, syscall.S_IFSOCK|0o644, 0) }, // open: ENXIO
		"too big": func(p string) error {
			return os.WriteFile(p, []byte(magic+"\nuid 0\nsender <>\nrcpt <a@b.test>\n\n"+strings.Repeat("x", 2000)), 0o644)
		},
		"malformed": func(p string) error { return os.WriteFile(p, []byte("From: x\n\nhi\n"), 0o644) },
	}
	for what, plant := range cases {
		t.Run(what, func(t *testing.T) {
			name := NewName(time.Now())
			if err := plant(filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
			m, err := Open(dir, name, 1000)
			if !errors.Is(err, ErrRefused) {
				if m != nil {
					m.Close()
				}
				t.Fatalf("Open: %v, want ErrRefused", err)
			}
			if err := Fail(dir, name); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(filepath.Join(dir, FailedDir, name)); err != nil {
				t.Errorf("not in failed/: %v", err)
			}
		})
	}
	if names, _ := List(dir); len(names) != 1 || names[0] != good {
		t.Errorf("List = %v, want only %s", names, good)
	}
	if b, _ := os.ReadFile(secret); !strings.Contains(string(b), "secret") {
		t.Error("the linked file changed")
	}
}

// TestParseEnvelopeErrors: each malformed envelope is refused with
// ErrMalformed and a reason.
func TestParseEnvelopeErrors(t *testing.T) {
	head := magic + "\nuid 1\nsender <a@b.test>\n"
	tests := map[string]string{
		"no magic":          "gateway-pickup 2\nuid 1\nsender <>\nrcpt <a@b.test>\n\n",
		"no rcpt":           head + "\n",
		"no uid":            magic + "\nsender <>\nrcpt <a@b.test>\n\n",
		"unended":           head + "rcpt <a@b.test>\n",
		"uid twice":         head + "uid 2\nrcpt <a@b.test>\n\n",
		"bad sender":        magic + "\nuid 1\nsender a@b.test\nrcpt <a@b.test>\n\n",
		"null rcpt":         head + "rcpt <>\n\n",
		"rcpt no domain":    head + "rcpt <postmaster>\n\n",
		"bad notify":        head + "rcpt <a@b.test> NOTIFY=SOMETIMES\n\n",
		"unknown param":     head + "rcpt <a@b.test> FOO=1\n\n",
		"unknown field":     head + "rcpt <a@b.test>\nprio 1\n\n",
		"CR":                head + "rcpt <a@b.test>\r\n\n",
		"bad ret":           head + "ret ALL\nrcpt <a@b.test>\n\n",
		"unknown body":      head + "body 9BIT\nrcpt <a@b.test>\n\n",
		"long line":         head + "rcpt <a@b.test>\nenvid " + strings.Repeat("x", 3000) + "\n\n",
		"negative uid":      magic + "\nuid -1\nsender <>\nrcpt <a@b.test>\n\n",
		"text after sender": magic + "\nuid 1\nsender <a@b.test> x\nrcpt <a@b.test>\n\n",
	}
	for what, in := range tests {
		_, _, err := ParseEnvelope(bufio.NewReader(strings.NewReader(in)))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", what, err)
		}
	}
}

// TestEncodeRefuses: Encode does not write what ParseEnvelope would refuse.
func TestEncodeRefuses(t *testing.T) {
	e := testEnvelope()
	e.EnvID = "a\rb"
	if _, err := e.Encode(); !errors.Is(err, ErrMalformed) {
		t.Errorf("ENVID with CR: %v, want ErrMalformed", err)
	}
	e = testEnvelope()
	e.Recipients = nil
	if _, err := e.Encode(); !errors.Is(err, ErrMalformed) {
		t.Errorf("no recipients: %v, want ErrMalformed", err)
	}
}

// TestSweep: stale temporary files go, fresh ones stay, strays move to
// failed/.
func TestSweep(t *testing.T) {
	dir := prepared(t)
	old, fresh, stray := filepath.Join(dir, tmpPrefix+"old"), filepath.Join(dir, tmpPrefix+"fresh"), filepath.Join(dir, "stray")
	for _, p := range []string{old, fresh, stray} {
		os.WriteFile(p, []byte("x"), 0o644)
	}
	past := time.Now().Add(-2 * staleTemp)
	os.Chtimes(old, past, past)
	if err := Sweep(dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{old: false, fresh: true, stray: false, filepath.Join(dir, FailedDir, "stray"): true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", p, err == nil, want)
		}
	}
}

// asRoot skips a test that must give files to another user.
func asRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
}

// TestOwnerUID: a file of another user is that user's, whatever uid it
// records; the server's own (and root's) rewrites keep theirs.
func TestOwnerUID(t *testing.T) {
	asRoot(t)
	dir := prepared(t)
	name, err := Write(dir, testEnvelope(), strings.NewReader("x\n")) // records uid 4242
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, name), 1234, 1234); err != nil {
		t.Fatal(err)
	}
	m, err := Open(dir, name, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Env.UID != 1234 {
		t.Errorf("UID %d, want the owner's 1234", m.Env.UID)
	}
}

// TestCheckOwner: a pickup directory another user owns is refused.
func TestCheckOwner(t *testing.T) {
	dir := prepared(t)
	if err := CheckOwner(dir); err != nil {
		t.Fatalf("own directory: %v", err)
	}
	asRoot(t)
	if err := os.Chown(dir, 1234, 1234); err != nil {
		t.Fatal(err)
	}
	if err := CheckOwner(dir); err == nil || !strings.Contains(err.Error(), "belongs to uid 1234") {
		t.Errorf("foreign directory: %v", err)
	}
}

// nonEmptyDir makes the folder path with a file in it.
func nonEmptyDir(t *testing.T, path string) {
	t.Helper()
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFailAgain: what fails under a name failed/ has already (a user
// planting the same folder again, a file refused twice) is moved beside
// it, not lost and not stuck; Sweep moves every stray entry even when
// one of them collides.
func TestFailAgain(t *testing.T) {
	dir := prepared(t)
	name := NewName(time.Now())
	for i := range 2 {
		nonEmptyDir(t, filepath.Join(dir, name))
		if err := Fail(dir, name); err != nil {
			t.Fatalf("Fail #%d: %v", i+1, err)
		}
	}
	file := NewName(time.Now())
	for i := range 2 {
		os.WriteFile(filepath.Join(dir, file), []byte{byte('0' + i)}, 0o644)
		if err := Fail(dir, file); err != nil {
			t.Fatalf("Fail of a file #%d: %v", i+1, err)
		}
	}
	nonEmptyDir(t, filepath.Join(dir, "stray"))
	if err := Sweep(dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	nonEmptyDir(t, filepath.Join(dir, "stray"))
	nonEmptyDir(t, filepath.Join(dir, "stray2"))
	if err := Sweep(dir, time.Now()); err != nil {
		t.Errorf("Sweep: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, FailedDir))
	count := map[string]int{}
	for _, e := range entries {
		switch base, _, _ := strings.Cut(e.Name(), "."); {
		case strings.HasPrefix(e.Name(), name):
			count["folder"]++
		case strings.HasPrefix(e.Name(), file):
			count["file"]++
		default:
			count[base]++
		}
	}
	if diff := cmp.Diff(map[string]int{"folder": 2, "file": 2, "stray": 2, "stray2": 1}, count); diff != "" {
		t.Errorf("failed/ (-want +got):\n%s", diff)
	}
	if left, _ := os.ReadDir(dir); len(left) != 1 {
		t.Errorf("the pickup directory still holds %d entries besides failed/", len(left)-1)
	}
}

// TestPrepareSearchable: Prepare lets every user search data_dir (the
// spool made it 0700), adding only the x bits, so that they reach the
// pickup directory.
func TestPrepareSearchable(t *testing.T) {
	for _, tt := range []struct{ mode, want os.FileMode }{
		{0o700, 0o711},
		{0o750, 0o751},
		{0o755, 0o755},
	} {
		data := filepath.Join(t.TempDir(), "data")
		if err := os.Mkdir(data, tt.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(data, tt.mode) // whatever the umask
		if err := Prepare(filepath.Join(data, "pickup")); err != nil {
			t.Fatal(err)
		}
		if st, _ := os.Stat(data); st.Mode().Perm() != tt.want {
			t.Errorf("data_dir %o became %o, want %o", tt.mode, st.Mode().Perm(), tt.want)
		}
	}
}

// TestCheckReachable names the folder above the pickup directory that
// other users cannot search.
func TestCheckReachable(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "data", "pickup")
	if err := Prepare(dir); err != nil {
		t.Fatal(err)
	}
	os.Chmod(top, 0o700)
	if err := CheckReachable(dir); err == nil || !strings.Contains(err.Error(), top+" is mode 0700") {
		t.Errorf("CheckReachable: %v, want %s named", err, top)
	}
	os.Chmod(top, 0o711)
	err := CheckReachable(dir)
	if err != nil && strings.Contains(err.Error(), top+" ") {
		t.Errorf("CheckReachable: %v, after %s was made searchable", err, top)
	}
}
