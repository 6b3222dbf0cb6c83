package smtp_test

import (
	"testing"

	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/sdk"
)

// TestReplyString checks the exact wire form of replies: code, separator,
// enhanced code when set, continuation lines, CR and LF replaced.
func TestReplyString(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    smtp.Reply
		want string
	}{
		{"enhanced", smtp.R(250, sdk.EnhancedCode{2, 1, 5}, "Ok"), "250 2.1.5 Ok"},
		{"wide enhanced", smtp.R(550, sdk.EnhancedCode{5, 999, 100}, "No"), "550 5.999.100 No"},
		{"no enhanced", smtp.Reply{Code: 220, Lines: []string{"mx.test ESMTP"}}, "220 mx.test ESMTP"},
		{"no lines", smtp.Reply{Code: 354}, "354 "},
		{"multiline", smtp.Reply{Code: 451, Enhanced: sdk.EnhancedCode{4, 3, 0}, Lines: []string{"a", "b", "c"}},
			"451-4.3.0 a\r\n451-4.3.0 b\r\n451 4.3.0 c"},
		{"ehlo", smtp.Reply{Code: 250, Lines: []string{"mx.test", "PIPELINING"}}, "250-mx.test\r\n250 PIPELINING"},
		{"cr lf inside", smtp.R(550, sdk.EnhancedCode{5, 7, 1}, "x\r\ny\nz"), "550 5.7.1 x  y z"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%s: String() = %q, want %q", tc.name, got, tc.want)
		}
	}
}
