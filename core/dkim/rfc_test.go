package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"regexp"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"
)

// The test vectors of RFC 8463 Appendix A: the Ed25519 key (A.1, the
// RFC 8032 §7.1 seed), the DNS records (A.2) and the message signed with
// both keys (A.3), byte for byte as published.
const (
	rfc8463Seed       = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
	rfc8463Brisbane   = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
	rfc8463Test       = "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
	rfc8463BodyHash   = "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
	rfc8463Ed25519B   = "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw=="
	rfc8463Ed25519Sig = "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n" +
		" d=football.example.com; i=@football.example.com;\r\n" +
		" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n" +
		" subject : date : message-id : from : subject : date;\r\n" +
		" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n" +
		" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n" +
		" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
	rfc8463RSASig = "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n" +
		" d=football.example.com; i=@football.example.com;\r\n" +
		" q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n" +
		" date : message-id : from : subject : date;\r\n" +
		" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n" +
		" b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n" +
		" DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n" +
		" dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n"
	rfc8463Message = "From: Joe SixPack <joe@football.example.com>\r\n" +
		"To: Suzie Q <suzie@shopping.example.net>\r\n" +
		"Subject: Is dinner ready?\r\n" +
		"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n" +
		"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n" +
		"\r\n" +
		"Hi.\r\n" +
		"\r\n" +
		"We lost the game.  Are you hungry yet?\r\n" +
		"\r\n" +
		"Joe.\r\n"
)

// rfc8463DNS answers the key queries of RFC 8463 A.2.
func rfc8463DNS(name string) ([]string, error) {
	switch name {
	case "brisbane._domainkey.football.example.com":
		return []string{rfc8463Brisbane}, nil
	case "test._domainkey.football.example.com":
		return []string{rfc8463Test}, nil
	}
	return nil, &testDNSError{name}
}

type testDNSError struct{ name string }

func (e *testDNSError) Error() string { return "no record for " + e.name }

// rfc8463Key is the Ed25519 key of RFC 8463 A.1 as a PKCS#8 key file.
func rfc8463Key(t testing.TB) []byte {
	t.Helper()
	seed, err := base64.StdEncoding.DecodeString(rfc8463Seed)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TestRFC8463Verify: both signatures of A.3 verify with the A.2 records,
// and fail once the body changes.
func TestRFC8463Verify(t *testing.T) {
	signed := rfc8463Ed25519Sig + rfc8463RSASig + rfc8463Message
	vs, err := msgdkim.VerifyWithOptions(strings.NewReader(signed), &msgdkim.VerifyOptions{LookupTXT: rfc8463DNS})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 {
		t.Fatalf("got %d verifications, want 2", len(vs))
	}
	for i, v := range vs {
		if v.Err != nil {
			t.Errorf("signature %d: %v, want it to verify", i, v.Err)
		}
	}
	vs, err = msgdkim.VerifyWithOptions(strings.NewReader(strings.Replace(signed, "hungry", "thirsty", 1)),
		&msgdkim.VerifyOptions{LookupTXT: rfc8463DNS})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vs {
		if v.Err == nil {
			t.Errorf("signature %d verifies a changed body", i)
		}
	}
}

// TestRFC8463Key: the A.1 key, loaded by ParseKey, is the key of the A.2
// record, and signs A.3's data to exactly A.3's b= (Ed25519 signatures
// are deterministic), so the key path is the one the RFC used.
func TestRFC8463Key(t *testing.T) {
	k, err := ParseKey(rfc8463Key(t))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := k.Record(), rfc8463Brisbane; got != want {
		t.Errorf("Record() = %q, want %q", got, want)
	}
	if got := k.SigningAlgorithm(); got != "ed25519-sha256" {
		t.Errorf("SigningAlgorithm() = %q, want ed25519-sha256", got)
	}
	// RFC 6376 §3.7: the signed header fields in h= order, then the
	// DKIM-Signature field with an empty b= and no final CRLF, all
	// relaxed (§3.4.2); ed25519-sha256 signs their SHA-256 (RFC 8463 §3).
	var data strings.Builder
	for _, line := range strings.SplitAfter(rfc8463Message[:strings.Index(rfc8463Message, "\r\n\r\n")+2], "\r\n") {
		if line != "" {
			data.WriteString(relaxedHeader(line))
		}
	}
	sig := regexp.MustCompile(`b=[^;]*$`).ReplaceAllString(strings.TrimSuffix(rfc8463Ed25519Sig, "\r\n"), "b=")
	data.WriteString(strings.TrimSuffix(relaxedHeader(sig), "\r\n"))
	sum := sha256.Sum256([]byte(data.String()))
	b, err := k.Signer().Sign(nil, sum[:], crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	if got := base64.StdEncoding.EncodeToString(b); got != rfc8463Ed25519B {
		t.Errorf("b= of A.3's data = %s, want %s", got, rfc8463Ed25519B)
	}
}

// relaxedHeader is RFC 6376 §3.4.2 for one field (written independently
// of go-msgauth, to check the vector against).
func relaxedHeader(field string) string {
	name, value, _ := strings.Cut(field, ":")
	value = strings.NewReplacer("\r\n", "").Replace(value)
	value = strings.Join(strings.FieldsFunc(value, func(r rune) bool { return r == ' ' || r == '\t' }), " ")
	return strings.ToLower(strings.TrimRight(name, " \t")) + ":" + value + "\r\n"
}

// TestRFC8463Sign signs A.3's unsigned message with the A.1 key: the body
// hash is A.3's, and the signature verifies with the A.2 record.
func TestRFC8463Sign(t *testing.T) {
	k, err := ParseKey(rfc8463Key(t))
	if err != nil {
		t.Fatal(err)
	}
	ks, err := NewKeys([]Domain{{Name: "football.example.com", Selector: "brisbane", Key: k}})
	if err != nil {
		t.Fatal(err)
	}
	field, d, err := ks.Sign(strings.NewReader(rfc8463Message))
	if err != nil || d == nil {
		t.Fatalf("Sign: %q, %v, %v", field, d, err)
	}
	if !strings.Contains(strings.ReplaceAll(field, "\r\n ", ""), "bh="+rfc8463BodyHash) {
		t.Errorf("signature %q lacks A.3's bh=%s", field, rfc8463BodyHash)
	}
	verifyOK(t, field+rfc8463Message, rfc8463DNS)
}

// TestRFC6376BodyExample: the body of RFC 6376 §3.4.6's example, relaxed
// (" C\r\nD E\r\n"), is what bh= hashes.
func TestRFC6376BodyExample(t *testing.T) {
	k, err := ParseKey(rfc8463Key(t))
	if err != nil {
		t.Fatal(err)
	}
	ks, _ := NewKeys([]Domain{{Name: "example.com", Selector: "s", Key: k}})
	msg := "A: X\r\nB : Y\t\r\n\tZ  \r\nFrom: a@example.com\r\n\r\n C \r\nD \t E\r\n\r\n\r\n"
	field, _, err := ks.Sign(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(" C\r\nD E\r\n"))
	if want := "bh=" + base64.StdEncoding.EncodeToString(sum[:]); !strings.Contains(strings.ReplaceAll(field, "\r\n ", ""), want) {
		t.Errorf("signature %q lacks %s", field, want)
	}
}

// verifyOK checks that msg has one DKIM signature and that go-msgauth's
// verifier passes it, looking keys up with dns.
func verifyOK(t *testing.T, msg string, dns func(string) ([]string, error)) {
	t.Helper()
	vs, err := msgdkim.VerifyWithOptions(strings.NewReader(msg), &msgdkim.VerifyOptions{LookupTXT: dns})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || vs[0].Err != nil {
		t.Fatalf("verifications %+v, want one that passes; message:\n%s", vs, msg)
	}
}

// verifyAll verifies every signature of msg and returns their errors.
func verifyAll(msg string, dns func(string) ([]string, error)) ([]error, error) {
	vs, err := msgdkim.VerifyWithOptions(strings.NewReader(msg), &msgdkim.VerifyOptions{LookupTXT: dns})
	errs := make([]error, len(vs))
	for i, v := range vs {
		errs[i] = v.Err
	}
	return errs, err
}
