// Package dkimtest checks DKIM signatures with an independent
// implementation, Debian's dkimpy (python3-dkim, and python3-nacl for
// Ed25519), run as /usr/bin/python3 with the keys handed to it: it never
// asks the machine's resolver.
package dkimtest

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// Python is the interpreter that sees Debian's python3-dkim (the python3
// on PATH may be another one).
const Python = "/usr/bin/python3"

//go:embed dkimpy_verify.py
var verifyScript string

// RequireDkimpy skips the test unless Python can import dkim and nacl.
func RequireDkimpy(t testing.TB) {
	t.Helper()
	if out, err := exec.Command(Python, "-c", "import dkim, nacl").CombinedOutput(); err != nil {
		t.Skipf("dkimpy is not available (%s -c 'import dkim, nacl': %v: %s); install python3-dkim and python3-nacl", Python, err, bytes.TrimSpace(out))
	}
}

// Verify runs dkimpy's verify on msg's first DKIM-Signature, with records
// (selector._domainkey.domain, no trailing dot, to the TXT text) as DNS.
// It returns dkimpy's verdict line: "pass", or "fail: " and why.
func Verify(t testing.TB, msg []byte, records map[string]string) string {
	t.Helper()
	RequireDkimpy(t)
	fq := make(map[string]string, len(records))
	for name, txt := range records {
		fq[strings.ToLower(strings.TrimSuffix(name, "."))+"."] = txt
	}
	arg, err := json.Marshal(fq)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Python, "-c", verifyScript, string(arg))
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.Output()
	verdict := string(bytes.TrimSpace(out))
	if err != nil && !strings.HasPrefix(verdict, "fail") {
		t.Fatalf("dkimpy: %v: %s", err, out)
	}
	return verdict
}
