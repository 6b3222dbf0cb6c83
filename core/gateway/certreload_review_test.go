package gateway_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestReloadFailsWhenRunningCertificatesUnreadable (review10b): a reload
// re-reads the listener's certificates at the paths the gateway started
// with, but config.Load checked the pair at the paths the file names now.
// Once a listener block's paths change (a renewal into a new folder), a
// damaged or removed pair at the running paths is found only by
// certificates.reload, whose error is logged while Reload (SIGHUP, the
// admin API, `gateway reload`) returns success; 4364f3b's promise that a
// reload with an unusable pair "then fails" holds only while the paths
// stay the same.
func TestReloadFailsWhenRunningCertificatesUnreadable(t *testing.T) {
	dir := t.TempDir()
	smtptest.WriteCertificate(t, dir)
	conf := func(sub string) string {
		return `
hostname = "mx.test"
listener "mx" {
  address = "127.0.0.1:0"
  tls {
    cert = "` + sub + `cert.pem"
    key  = "` + sub + `key.pem"
  }
}
domains = ["example.test"]
` + gatewaytest.DeadRoute
	}
	path := writeFile(t, dir, "gateway.hcl", conf(""))
	g := gatewaytest.StartFile(t, path)
	addr := g.Addr(t, "mx")
	first := starttlsLeaf(t, addr)

	if err := os.Mkdir(filepath.Join(dir, "new"), 0o700); err != nil {
		t.Fatal(err)
	}
	smtptest.WriteCertificate(t, filepath.Join(dir, "new"))
	writeFile(t, dir, "gateway.hcl", conf("new/"))
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := g.Reload(context.Background())
	if err == nil {
		t.Errorf("reload = nil; want an error: the certificate files the listener reads on a reload are damaged (log:\n%s)", g.Log().String())
	}
	if got := starttlsLeaf(t, addr); !got.Equal(first) {
		t.Error("served certificate changed")
	}
}
