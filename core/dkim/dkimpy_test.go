package dkim

import (
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/dkim/dkimtest"
)

// TestDkimpyVerifies: dkimpy passes our rsa-sha256 and ed25519-sha256
// signatures, and fails them once the body changes.
func TestDkimpyVerifies(t *testing.T) {
	dkimtest.RequireDkimpy(t)
	msg := "From: Alice <alice@example.test>\r\nTo: bob@dest.test\r\nSubject: hi\r\nDate: Sun, 6 Dec 2026 16:00:00 +0000\r\n" +
		"Message-ID: <1@example.test>\r\n\r\nHello  there,\r\n\r\nBob.\r\n\r\n"
	for _, file := range []string{"testdata/rsa2048_pkcs8.pem", "testdata/rsa1024_pkcs1.pem", "testdata/ed25519.pem"} {
		t.Run(file, func(t *testing.T) {
			k := mustLoad(t, file)
			ks, _ := NewKeys([]Domain{{Name: "example.test", Selector: "s1", Key: k}})
			field, _, err := ks.Sign(strings.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			dns := map[string]string{"s1._domainkey.example.test": k.Record()}
			if got := dkimtest.Verify(t, []byte(field+msg), dns); got != "pass" {
				t.Errorf("dkimpy: %s", got)
			}
			if got := dkimtest.Verify(t, []byte(field+strings.Replace(msg, "Bob.", "Eve.", 1)), dns); !strings.HasPrefix(got, "fail") {
				t.Errorf("dkimpy on a changed body: %s, want fail", got)
			}
		})
	}
}
