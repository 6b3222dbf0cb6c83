package dkim

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/dkim/dkimtest"
)

func mustLoad(t testing.TB, path string) *Key {
	t.Helper()
	k, err := LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseKey(t *testing.T) {
	two := append(mustRead(t, "testdata/ed25519.pem"), mustRead(t, "testdata/ed25519.pem")...)
	tests := []struct {
		name, file string
		data       []byte
		want       string // Key.String, or the error's text
	}{
		{name: "pkcs1 rsa 1024", file: "testdata/rsa1024_pkcs1.pem", want: "rsa-1024"},
		{name: "pkcs8 rsa 2048", file: "testdata/rsa2048_pkcs8.pem", want: "rsa-2048"},
		{name: "pkcs8 ed25519", file: "testdata/ed25519.pem", want: "ed25519"},
		{name: "short rsa", file: "testdata/rsa512.pem", want: "dkim: bad key: an RSA key of 512 bits; at least 1024 are needed"},
		{name: "ecdsa", file: "testdata/ecdsa.pem", want: "dkim: bad key: a *ecdsa.PrivateKey; DKIM signs with RSA or Ed25519"},
		{name: "not pem", data: []byte("hello\n"), want: "dkim: bad key: no PEM block"},
		{name: "two blocks", data: two, want: "dkim: bad key: more than one PEM block"},
		{name: "certificate", data: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
			want: `dkim: bad key: a PEM "CERTIFICATE" block, want "PRIVATE KEY" (PKCS#8) or "RSA PRIVATE KEY" (PKCS#1)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.data
			if tt.file != "" {
				data = mustRead(t, tt.file)
			}
			k, err := ParseKey(data)
			got := ""
			if err != nil {
				got = err.Error()
				if !errors.Is(err, ErrBadKey) {
					t.Errorf("error %v does not wrap ErrBadKey", err)
				}
			} else {
				got = k.String()
			}
			if got != tt.want {
				t.Errorf("ParseKey(%s) = %q, want %q", tt.name, got, tt.want)
			}
		})
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKeyPEMRoundTrip: a generated key written as PEM reads back as the
// same key, for both algorithms.
func TestKeyPEMRoundTrip(t *testing.T) {
	for _, alg := range []string{"rsa", "ed25519"} {
		k, err := GenerateKey(alg, 1024)
		if err != nil {
			t.Fatal(err)
		}
		p, err := k.PEM()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseKey(p)
		if err != nil {
			t.Fatal(err)
		}
		if back.Record() != k.Record() || !bytes.HasPrefix(p, []byte("-----BEGIN PRIVATE KEY-----\n")) {
			t.Errorf("%s: the key read back differs", alg)
		}
	}
	if _, err := GenerateKey("rsa", 512); err == nil {
		t.Error("GenerateKey(rsa, 512) made a key")
	}
	if _, err := GenerateKey("dsa", 0); err == nil {
		t.Error("GenerateKey(dsa) made a key")
	}
}

func TestKeysMatch(t *testing.T) {
	k := mustLoad(t, "testdata/ed25519.pem")
	ks, err := NewKeys([]Domain{{Name: "Example.test.", Selector: "s1", Key: k}, {Name: "mail.example.test", Selector: "s2", Key: k}})
	if err != nil {
		t.Fatal(err)
	}
	for from, want := range map[string]string{
		"example.test":          "example.test",
		"EXAMPLE.TEST":          "example.test",
		"a.b.example.test":      "example.test",
		"mail.example.test":     "mail.example.test",
		"x.mail.example.test.":  "mail.example.test",
		"other.test":            "",
		"test":                  "",
		"notexample.test":       "",
		"example.test.evil.org": "",
	} {
		got := ""
		if d, ok := ks.Match(from); ok {
			got = d.Name
		}
		if got != want {
			t.Errorf("Match(%q) = %q, want %q", from, got, want)
		}
	}
	if d, ok := ks.Lookup("MAIL.example.test"); !ok || d.Selector != "s2" || d.Key.Signer() == nil {
		t.Errorf("Lookup(MAIL.example.test) = %+v, %v", d, ok)
	}
	if _, ok := ks.Lookup("a.example.test"); ok {
		t.Error("Lookup takes a subdomain")
	}
	if _, err := NewKeys([]Domain{{Name: "a.test", Selector: "s", Key: k}, {Name: "A.test", Selector: "t", Key: k}}); !errors.Is(err, ErrDuplicateDomain) {
		t.Errorf("duplicate domain: %v, want ErrDuplicateDomain", err)
	}
	var none *Keys
	if _, ok := none.Match("example.test"); ok || none.Len() != 0 {
		t.Error("a nil Keys matches")
	}
}

// TestSignedFields: each listed field as often as present, From once more.
func TestSignedFields(t *testing.T) {
	d := &Domain{Headers: []string{"From", "To", "Subject", "Cc", "to"}}
	fields := []headerField{{Name: "Received"}, {Name: "from"}, {Name: "To"}, {Name: "TO"}, {Name: "Subject"}}
	got := d.signedFields(fields)
	want := []string{"From", "From", "To", "To", "Subject"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("signedFields (-want +got):\n%s", diff)
	}
}

// TestSignWhom: which From: fields get a signature, and for which domain.
func TestSignWhom(t *testing.T) {
	k := mustLoad(t, "testdata/ed25519.pem")
	ks, _ := NewKeys([]Domain{{Name: "example.test", Selector: "s1", Key: k}, {Name: "xn--exmple-cua.test", Selector: "s1", Key: k}})
	tests := []struct{ name, header, want string }{
		{"plain", "From: a@example.test\r\n", "example.test"},
		{"display name", "From: \"A, B\" <a@Sub.Example.Test>\r\n", "example.test"},
		{"folded", "From: A\r\n <a@example.test>\r\n", "example.test"},
		{"two of one domain", "From: a@example.test, b@example.test\r\n", "example.test"},
		{"two domains", "From: a@example.test, b@other.test\r\n", ""},
		{"two From fields", "From: a@example.test\r\nFrom: a@example.test\r\n", ""},
		{"no From", "Sender: a@example.test\r\n", ""},
		{"other domain", "From: a@other.test\r\n", ""},
		{"unparsable", "From: <<<\r\n", ""},
		{"U-label", "From: José <josé@exämple.test>\r\n", "xn--exmple-cua.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := tt.header + "Subject: hi\r\n\r\nbody\r\n"
			field, d, err := ks.Sign(strings.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if d != nil {
				got = d.Name
				verifyOK(t, field+msg, recordsOf("s1._domainkey."+d.Name, k))
			} else if field != "" {
				t.Errorf("no domain but a field %q", field)
			}
			if got != tt.want {
				t.Errorf("signed by %q, want %q", got, tt.want)
			}
		})
	}
}

// recordsOf answers the one DNS name with k's record.
func recordsOf(name string, k *Key) func(string) ([]string, error) {
	return func(q string) ([]string, error) {
		if q == name {
			return []string{k.Record()}, nil
		}
		return nil, &testDNSError{q}
	}
}

// TestSignRSA: rsa-sha256, relaxed/relaxed, From over-signed, and the
// signature still verifies after a header is refolded in transit
// (relaxed) but not after a second From is added on top.
func TestSignRSA(t *testing.T) {
	k := mustLoad(t, "testdata/rsa2048_pkcs8.pem")
	ks, _ := NewKeys([]Domain{{Name: "example.test", Selector: "s1", Key: k}})
	msg := "Received: from x\r\nFrom: a@example.test\r\nTo: b@dest.test\r\nSubject: hi\r\n\r\nbody\r\n"
	field, _, err := ks.Sign(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.ReplaceAll(field, "\r\n ", "")
	for _, want := range []string{"a=rsa-sha256", "c=relaxed/relaxed", "d=example.test", "s=s1", "h=From:From:Subject:To;"} {
		if !strings.Contains(flat, want) {
			t.Errorf("signature %q lacks %q", flat, want)
		}
	}
	dns := recordsOf("s1._domainkey.example.test", k)
	verifyOK(t, field+strings.Replace(msg, "Subject: hi", "Subject:   hi", 1), dns)
	vs, _ := verifyAll(field+"From: evil@example.test\r\n"+msg, dns)
	if len(vs) != 1 || vs[0] == nil {
		t.Errorf("a second From still verifies")
	}
}

// TestTXT: the record to publish, exactly, for a fixed RSA-2048 key (two
// strings: 255 octets, then the rest) and an Ed25519 key (one).
func TestTXT(t *testing.T) {
	for _, file := range []string{"testdata/rsa2048_pkcs8.pem", "testdata/ed25519.pem"} {
		got := mustLoad(t, file).TXT("s1", "example.test.") + "\n"
		golden := strings.TrimSuffix(file, ".pem") + ".txt"
		if want := string(mustRead(t, golden)); got != want {
			t.Errorf("TXT of %s:\n%s\nwant (%s):\n%s", file, got, golden, want)
		}
	}
}

// TestReadHeaderLongLine: a line longer than the reader's buffer whose
// CR ends one read and LF starts the next is not the empty line that ends
// the header section.
func TestReadHeaderLongLine(t *testing.T) {
	const header = "Subject: 123456\r\nFrom: a@example.test\r\n\r\n"
	for _, size := range []int{16, 17, 4096} {
		br := bufio.NewReaderSize(strings.NewReader(header+"body\r\n"), size)
		got, ended, err := readHeader(br)
		if err != nil || string(got) != header || !ended {
			t.Errorf("buffer %d: readHeader = %q, %v; want %q", size, got, err, header)
		}
	}
}

// TestSignNoBody: a message that is only a header section, without the
// empty line (RFC 5322 allows it), is signed, and the signature verifies
// (dkimpy; go-msgauth's verifier cannot read such a message) on the
// message as the next hop gets it: its last line ended.
func TestSignNoBody(t *testing.T) {
	k := mustLoad(t, "testdata/ed25519.pem")
	ks, _ := NewKeys([]Domain{{Name: "example.test", Selector: "s1", Key: k}})
	for msg, sent := range map[string]string{
		"From: a@example.test\r\nSubject: x\r\n":     "From: a@example.test\r\nSubject: x\r\n",
		"From: a@example.test\r\nSubject: x":         "From: a@example.test\r\nSubject: x\r\n",
		"From: a@example.test\r\nSubject: x\r\n\r\n": "",
	} {
		field, d, err := ks.Sign(strings.NewReader(msg))
		if err != nil || d == nil {
			t.Errorf("Sign(%q) = %v, %v; want a signature", msg, d, err)
			continue
		}
		if sent == "" {
			verifyOK(t, field+msg, recordsOf("s1._domainkey.example.test", k))
			continue
		}
		dns := map[string]string{"s1._domainkey.example.test": k.Record()}
		if got := dkimtest.Verify(t, []byte(field+sent), dns); got != "pass" {
			t.Errorf("dkimpy on %q: %s", field+sent, got)
		}
	}
}
