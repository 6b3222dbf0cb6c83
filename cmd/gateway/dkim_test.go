package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/dkim"
)

// TestDKIMKeygen: the key file (PKCS#8, 0600, never overwritten) and the
// exact TXT record and hint printed for it.
func TestDKIMKeygen(t *testing.T) {
	for _, tc := range []struct{ alg, bits, kind string }{{"rsa", "2048", "rsa-2048"}, {"rsa", "1024", "rsa-1024"}, {"ed25519", "2048", "ed25519"}} {
		t.Run(tc.kind, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "dkim")
			code, out, errOut := runCLI(t, "dkim", "keygen", "-domain", "Example.TEST.", "-selector", "s1", "-algorithm", tc.alg, "-bits", tc.bits, "-out", dir)
			if code != 0 {
				t.Fatalf("keygen: code %d, stderr %s", code, errOut)
			}
			path := filepath.Join(dir, "example.test.s1.pem")
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
			}
			k, err := dkim.LoadKey(path)
			if err != nil {
				t.Fatal(err)
			}
			if k.String() != tc.kind {
				t.Errorf("key is %s, want %s", k, tc.kind)
			}
			if want := k.TXT("s1", "example.test") + "\n"; out != want {
				t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
			}
			checkTXT(t, out, "s1._domainkey.example.test.", k.Record())
			wantErr := "gateway dkim keygen: wrote " + path + " (" + tc.kind + "). Publish the TXT record above, then add to gateway.hcl:\n\n" +
				"dkim \"example.test\" {\n  selector = \"s1\"\n  key_file = \"" + path + "\"\n}\n"
			if errOut != wantErr {
				t.Errorf("stderr:\n%s\nwant:\n%s", errOut, wantErr)
			}

			before, _ := os.ReadFile(path)
			code, out, errOut = runCLI(t, "dkim", "keygen", "-domain", "example.test", "-selector", "s1", "-out", dir)
			if want := "gateway dkim: " + path + " exists; not overwritten (remove it, or choose another selector)\n"; code != 1 || out != "" || errOut != want {
				t.Errorf("second keygen: code %d, stdout %q, stderr %q; want 1, \"\", %q", code, out, errOut, want)
			}
			if after, _ := os.ReadFile(path); string(after) != string(before) {
				t.Error("the key file was overwritten")
			}
		})
	}
}

// checkTXT checks that line is the record for name, in strings of at most
// 255 octets that join to rec.
func checkTXT(t *testing.T, line, name, rec string) {
	t.Helper()
	if !strings.HasPrefix(line, name+" IN TXT ( ") || !strings.HasSuffix(line, " )\n") {
		t.Errorf("record %q is not %s IN TXT ( … )", line, name)
	}
	var joined string
	for _, m := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(line, -1) {
		if len(m[1]) > 255 {
			t.Errorf("a string of %d octets: %q", len(m[1]), m[1])
		}
		joined += m[1]
	}
	if joined != rec {
		t.Errorf("the strings join to %q, want %q", joined, rec)
	}
}

func TestDKIMKeygenUsage(t *testing.T) {
	const usage = "usage: gateway dkim keygen -domain D -selector S [-algorithm rsa|ed25519] [-bits 2048] [-out DIR]\n"
	for _, tc := range []struct {
		args []string
		want string // stderr up to the usage line
	}{
		{[]string{"-selector", "s1"}, "gateway dkim keygen: -domain and -selector are required\n"},
		{[]string{"-domain", "example.test"}, "gateway dkim keygen: -domain and -selector are required\n"},
		{[]string{"-domain", "ex ample.test", "-selector", "s1"}, "gateway dkim keygen: -domain \"ex ample.test\" is not a domain name\n"},
		{[]string{"-domain", "[192.0.2.1]", "-selector", "s1"}, "gateway dkim keygen: -domain \"[192.0.2.1]\" is not a domain name\n"},
		{[]string{"-domain", "example.test", "-selector", "s_1"}, "gateway dkim keygen: -selector \"s_1\" is not a DNS name\n"},
		{[]string{"-domain", "example.test", "-selector", "s1", "-algorithm", "dsa"}, "gateway dkim keygen: -algorithm \"dsa\": want rsa or ed25519\n"},
		{[]string{"-domain", "example.test", "-selector", "s1", "-bits", "512"}, "gateway dkim keygen: -bits 512: an RSA key has 1024 to 4096 bits\n"},
		{[]string{"-domain", "example.test", "-selector", "s1", "extra"}, "gateway dkim keygen: unexpected argument \"extra\"\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			dir := t.TempDir()
			code, out, errOut := runCLI(t, append([]string{"dkim", "keygen", "-out", dir}, tc.args...)...)
			if code != 2 || out != "" || !strings.HasPrefix(errOut, tc.want+usage) {
				t.Errorf("code %d, stdout %q, stderr %q; want 2, \"\", %q + usage", code, out, errOut, tc.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				t.Errorf("wrote %s", entries[0].Name())
			}
		})
	}
	code, _, errOut := runCLI(t, "dkim", "frob")
	if code != 2 || !strings.HasPrefix(errOut, "gateway dkim: unknown command \"frob\"\nusage: gateway dkim <command>\n") {
		t.Errorf("dkim frob: code %d, stderr %q", code, errOut)
	}
}
