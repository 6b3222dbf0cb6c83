package dkim

import (
	"strings"
	"testing"
)

// benchMessage is a 10 KB message.
func benchMessage() string {
	var b strings.Builder
	b.WriteString("Received: from client.example.org by mx.example.test; Sun, 6 Dec 2026 16:00:00 +0000\r\n" +
		"From: Alice <alice@example.test>\r\nTo: Bob <bob@dest.test>\r\nSubject: the report\r\n" +
		"Date: Sun, 6 Dec 2026 16:00:00 +0000\r\nMessage-ID: <1@example.test>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n")
	for b.Len() < 10<<10 {
		b.WriteString("The quarterly figures are attached; the  totals are up  on last year.\r\n")
	}
	return b.String()
}

// BenchmarkSign is the cost of signing one 10 KB message with a key
// parsed once (as the gateway does): RSA-2048 and Ed25519.
func BenchmarkSign(b *testing.B) {
	msg := benchMessage()
	for _, file := range []string{"testdata/rsa2048_pkcs8.pem", "testdata/ed25519.pem"} {
		k := mustLoad(b, file)
		ks, err := NewKeys([]Domain{{Name: "example.test", Selector: "s1", Key: k}})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(k.String(), func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, d, err := ks.Sign(strings.NewReader(msg)); err != nil || d == nil {
					b.Fatal(d, err)
				}
			}
		})
	}
}

// BenchmarkParseKey is what the gateway saves by parsing keys once.
func BenchmarkParseKey(b *testing.B) {
	data := mustRead(b, "testdata/rsa2048_pkcs8.pem")
	for b.Loop() {
		if _, err := ParseKey(data); err != nil {
			b.Fatal(err)
		}
	}
}
