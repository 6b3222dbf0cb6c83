package mailauth_test

import (
	"context"
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/mailauth"
)

// TestARCSlot: an ARC verifier plugged into Options.ARC sees the whole
// message, and its result reaches the results and the header.
func TestARCSlot(t *testing.T) {
	w := newWorld(t, "")
	var seen string
	c, err := mailauth.New(mailauth.Options{
		SPF: true, DMARC: "report", AuthservID: "mx.example.test", Resolver: w.res,
		ARC: func(ctx context.Context, msg []byte) (string, string) {
			seen = string(msg)
			return "pass", "arc=pass (i=1 d=lists.example)"
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	v := check(t, c, input(t, "a@pass.test", "c.test", "From: x@pass.test\n\nhi\n"))
	const want = "Authentication-Results: mx.example.test;\r\n" +
		"\tspf=pass smtp.mailfrom=a@pass.test;\r\n" +
		"\tdmarc=pass header.from=pass.test;\r\n" +
		"\tarc=pass (i=1 d=lists.example)\r\n"
	if string(v.Header) != want {
		t.Errorf("header\n%s\nwant\n%s", v.Header, want)
	}
	if v.Results.ARC.Result != "pass" || !strings.HasSuffix(seen, "\r\n\r\nhi\r\n") {
		t.Errorf("arc %q, verifier saw %q", v.Results.ARC.Result, seen)
	}
	// Without a verifier: no arc clause, and "none" for hooks.
	c, _ = mailauth.New(mailauth.Options{SPF: true, AuthservID: "mx.example.test", Resolver: w.res})
	v = check(t, c, input(t, "a@pass.test", "c.test", "From: x@pass.test\n\nhi\n"))
	if strings.Contains(string(v.Header), "arc=") || v.Results.ARC.Result != "none" {
		t.Errorf("without a verifier: %q, %+v", v.Header, v.Results.ARC)
	}
}

// TestCheckSurvivesAPanic: a check that panics on its goroutine (where
// the SMTP session's recover cannot reach) is a local failure of Check,
// not the end of the process.
func TestCheckSurvivesAPanic(t *testing.T) {
	w := newWorld(t, "")
	c, err := mailauth.New(mailauth.Options{
		SPF: true, DMARC: "report", AuthservID: "mx.example.test", Resolver: w.res,
		ARC: func(ctx context.Context, msg []byte) (string, string) { panic("a library met input it cannot take") },
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Check(context.Background(), input(t, "a@pass.test", "c.test", "From: x@pass.test\n\nhi\n"))
	if err == nil || !strings.Contains(err.Error(), "the ARC check panicked: a library met input it cannot take") {
		t.Errorf("Check = %v, want the panic as an error", err)
	}
}
