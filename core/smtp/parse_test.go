package smtp

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/envelope"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Command
		wantErr bool
	}{
		{name: "no arg", in: "QUIT", want: Command{Verb: "QUIT"}},
		{name: "lower case", in: "quit", want: Command{Verb: "QUIT"}},
		{name: "mixed case arg kept", in: "mail FROM:<A@B>", want: Command{Verb: "MAIL", Arg: "FROM:<A@B>"}},
		{name: "ehlo", in: "EHLO client.example", want: Command{Verb: "EHLO", Arg: "client.example"}},
		{name: "trailing space", in: "QUIT ", want: Command{Verb: "QUIT", Arg: ""}},
		{name: "two spaces", in: "NOOP  x", want: Command{Verb: "NOOP", Arg: " x"}},
		{name: "digits", in: "X2 y", want: Command{Verb: "X2", Arg: "y"}},
		{name: "16 letters", in: "ABCDEFGHIJKLMNOP", want: Command{Verb: "ABCDEFGHIJKLMNOP"}},
		{name: "utf8 arg", in: "RCPT TO:<ü@example.com>", want: Command{Verb: "RCPT", Arg: "TO:<ü@example.com>"}},
		{name: "tab in arg", in: "NOOP a\tb", want: Command{Verb: "NOOP", Arg: "a\tb"}},
		{name: "empty", in: "", wantErr: true},
		{name: "leading space", in: " QUIT", wantErr: true},
		{name: "17 letters", in: "ABCDEFGHIJKLMNOPQ", wantErr: true},
		{name: "tab after verb", in: "NOOP\tx", wantErr: true},
		{name: "colon in verb", in: "MAIL:FROM", wantErr: true},
		{name: "nul in arg", in: "NOOP a\x00b", wantErr: true},
		{name: "nul in verb", in: "NO\x00OP", wantErr: true},
		{name: "cr in arg", in: "NOOP a\rb", wantErr: true},
		{name: "lf in arg", in: "NOOP a\nb", wantErr: true},
		{name: "trailing cr", in: "QUIT\r", wantErr: true},
		{name: "non ascii verb", in: "QÜIT", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCommand([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, ErrSyntax) {
					t.Fatalf("ParseCommand(%q) = %+v, %v; want ErrSyntax", tt.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCommand(%q) error: %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseCommand(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseCommandCopies(t *testing.T) {
	line := []byte("MAIL FROM:<a@b>")
	cmd, err := ParseCommand(line)
	if err != nil {
		t.Fatal(err)
	}
	copy(line, "XXXXXXXXXXXXXXX")
	if cmd.Verb != "MAIL" || cmd.Arg != "FROM:<a@b>" {
		t.Errorf("Command shares memory with the line buffer: %+v", cmd)
	}
}

func TestParseMail(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    MailArgs
		wantErr error
	}{
		{name: "simple", in: "FROM:<a@example.com>", want: MailArgs{From: envelope.Address{Local: "a", Domain: "example.com"}}},
		{name: "null", in: "FROM:<>", want: MailArgs{}},
		{name: "lower from", in: "from:<a@b>", want: MailArgs{From: envelope.Address{Local: "a", Domain: "b"}}},
		{name: "space after colon", in: "FROM: <a@b>", want: MailArgs{From: envelope.Address{Local: "a", Domain: "b"}}},
		{name: "all params", in: "FROM:<a@b> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159 AUTH=a+2Bb@c",
			want: MailArgs{From: envelope.Address{Local: "a", Domain: "b"}, Size: 1000, Body: envelope.Body8BitMIME,
				SMTPUTF8: true, Ret: envelope.RetHdrs, EnvID: "QQ314159", Auth: "a+2Bb@c"}},
		{name: "keywords any case", in: "FROM:<a@b> size=5 Body=binarymime smtputf8 ret=full",
			want: MailArgs{From: envelope.Address{Local: "a", Domain: "b"}, Size: 5, Body: envelope.BodyBinaryMIME,
				SMTPUTF8: true, Ret: envelope.RetFull}},
		{name: "body 7bit", in: "FROM:<> BODY=7bit", want: MailArgs{Body: envelope.Body7Bit}},
		{name: "extra spaces", in: "FROM:<>  SIZE=1 ", want: MailArgs{Size: 1}},
		{name: "size zero", in: "FROM:<> SIZE=0", want: MailArgs{}},
		{name: "size max int64", in: "FROM:<> SIZE=9223372036854775807", want: MailArgs{Size: 9223372036854775807}},
		{name: "auth null", in: "FROM:<> AUTH=<>", want: MailArgs{Auth: "<>"}},
		{name: "envid 100", in: "FROM:<> ENVID=" + strings.Repeat("e", 100), want: MailArgs{EnvID: strings.Repeat("e", 100)}},
		{name: "requiretls", in: "FROM:<a@b> RequireTLS", want: MailArgs{From: envelope.Address{Local: "a", Domain: "b"}, RequireTLS: true}},
		{name: "utf8 with smtputf8", in: "FROM:<ü@bücher.example> SMTPUTF8",
			want: MailArgs{From: envelope.Address{Local: "ü", Domain: "bücher.example"}, SMTPUTF8: true}},
		{name: "source route", in: "FROM:<@r.example:a@b>", want: MailArgs{From: envelope.Address{Local: "a", Domain: "b"}}},

		{name: "no from", in: "<a@b>", wantErr: ErrSyntax},
		{name: "to instead of from", in: "TO:<a@b>", wantErr: ErrSyntax},
		{name: "two spaces after colon", in: "FROM:  <a@b>", wantErr: ErrSyntax},
		{name: "space before colon", in: "FROM :<a@b>", wantErr: ErrSyntax},
		{name: "no brackets", in: "FROM:a@b", wantErr: ErrSyntax},
		{name: "bad path", in: "FROM:<a..b@c>", wantErr: envelope.ErrBadAddress},
		{name: "glued param", in: "FROM:<a@b>SIZE=1", wantErr: ErrSyntax},
		{name: "utf8 without smtputf8", in: "FROM:<ü@b>", wantErr: ErrUTF8Required},
		{name: "utf8 required is syntax", in: "FROM:<ü@b>", wantErr: ErrSyntax},
		{name: "bad keyword", in: "FROM:<> -SIZE=1", wantErr: ErrSyntax},
		{name: "keyword with underscore", in: "FROM:<> X_Y=1", wantErr: ErrSyntax},
		{name: "unknown", in: "FROM:<> FOO=bar", wantErr: ErrUnknownParam},
		{name: "unknown no value", in: "FROM:<> XFOO", wantErr: ErrUnknownParam},
		{name: "rcpt param on mail", in: "FROM:<> NOTIFY=NEVER", wantErr: ErrUnknownParam},
		{name: "size letters", in: "FROM:<> SIZE=10k", wantErr: ErrBadParamValue},
		{name: "size sign", in: "FROM:<> SIZE=+10", wantErr: ErrBadParamValue},
		{name: "size negative", in: "FROM:<> SIZE=-1", wantErr: ErrBadParamValue},
		{name: "size empty", in: "FROM:<> SIZE=", wantErr: ErrBadParamValue},
		{name: "size missing", in: "FROM:<> SIZE", wantErr: ErrBadParamValue},
		{name: "size overflow", in: "FROM:<> SIZE=9223372036854775808", wantErr: ErrBadParamValue},
		{name: "size 21 digits", in: "FROM:<> SIZE=000000000000000000001", wantErr: ErrBadParamValue},
		{name: "size twice", in: "FROM:<> SIZE=1 SIZE=1", wantErr: ErrBadParamValue},
		{name: "size twice any case", in: "FROM:<> SIZE=1 size=2", wantErr: ErrBadParamValue},
		{name: "body bad", in: "FROM:<> BODY=9BIT", wantErr: ErrBadParamValue},
		{name: "body dotless i", in: "FROM:<> BODY=8bitmıme", wantErr: ErrBadParamValue},
		{name: "body twice", in: "FROM:<> BODY=7BIT BODY=8BITMIME", wantErr: ErrBadParamValue},
		{name: "smtputf8 value", in: "FROM:<> SMTPUTF8=yes", wantErr: ErrBadParamValue},
		{name: "smtputf8 empty value", in: "FROM:<> SMTPUTF8=", wantErr: ErrBadParamValue},
		{name: "smtputf8 twice", in: "FROM:<> SMTPUTF8 SMTPUTF8", wantErr: ErrBadParamValue},
		{name: "requiretls value", in: "FROM:<> REQUIRETLS=yes", wantErr: ErrBadParamValue},
		{name: "requiretls twice", in: "FROM:<> requiretls REQUIRETLS", wantErr: ErrBadParamValue},
		{name: "ret bad", in: "FROM:<> RET=ALL", wantErr: ErrBadParamValue},
		{name: "envid bad xtext", in: "FROM:<> ENVID=a+zz", wantErr: ErrBadParamValue},
		{name: "envid equals", in: "FROM:<> ENVID=a=b", wantErr: ErrBadParamValue},
		{name: "envid empty", in: "FROM:<> ENVID=", wantErr: ErrBadParamValue},
		{name: "envid 101", in: "FROM:<> ENVID=" + strings.Repeat("e", 101), wantErr: ErrBadParamValue},
		{name: "auth bad", in: "FROM:<> AUTH=a=b", wantErr: ErrBadParamValue},
		{name: "auth empty", in: "FROM:<> AUTH=", wantErr: ErrBadParamValue},
		{name: "param non ascii", in: "FROM:<> RET=FÜLL", wantErr: ErrBadParamValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMail(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseMail(%q) = %+v, %v; want %v", tt.in, got, err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "smtp: ") {
					t.Errorf("error %q lacks the smtp: prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseMail(%q) error: %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseMail(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseMailPathErrorWrapsBoth(t *testing.T) {
	_, err := ParseMail("FROM:<a@-b>")
	if !errors.Is(err, ErrSyntax) || !errors.Is(err, envelope.ErrBadAddress) {
		t.Fatalf("error %v does not wrap both ErrSyntax and ErrBadAddress", err)
	}
	var ae *envelope.AddressError
	if !errors.As(err, &ae) || ae.Reason == "" {
		t.Errorf("error %v carries no *envelope.AddressError", err)
	}
}

func TestParseRcpt(t *testing.T) {
	ab := envelope.Address{Local: "a", Domain: "b"}
	tests := []struct {
		name     string
		in       string
		smtputf8 bool
		want     RcptArgs
		wantErr  error
	}{
		{name: "simple", in: "TO:<a@b>", want: RcptArgs{To: envelope.Recipient{Address: ab}}},
		{name: "lower to", in: "to:<a@b>", want: RcptArgs{To: envelope.Recipient{Address: ab}}},
		{name: "space after colon", in: "TO: <a@b>", want: RcptArgs{To: envelope.Recipient{Address: ab}}},
		{name: "postmaster", in: "TO:<postmaster>", want: RcptArgs{To: envelope.Recipient{Address: envelope.Address{Local: "postmaster"}}, Postmaster: true}},
		{name: "postmaster case kept", in: "TO:<PostMaster> NOTIFY=NEVER",
			want: RcptArgs{To: envelope.Recipient{Address: envelope.Address{Local: "PostMaster"}, Notify: envelope.NotifyNever}, Postmaster: true}},
		{name: "postmaster with domain", in: "TO:<postmaster@b>", want: RcptArgs{To: envelope.Recipient{Address: envelope.Address{Local: "postmaster", Domain: "b"}}}},
		{name: "source route", in: "TO:<@x.example,@y.example:a@b>", want: RcptArgs{To: envelope.Recipient{Address: ab}}},
		{name: "notify never", in: "TO:<a@b> NOTIFY=NEVER", want: RcptArgs{To: envelope.Recipient{Address: ab, Notify: envelope.NotifyNever}}},
		{name: "notify list", in: "TO:<a@b> notify=success,Delay",
			want: RcptArgs{To: envelope.Recipient{Address: ab, Notify: envelope.NotifySuccess | envelope.NotifyDelay}}},
		{name: "notify all", in: "TO:<a@b> NOTIFY=FAILURE,SUCCESS,DELAY",
			want: RcptArgs{To: envelope.Recipient{Address: ab, Notify: envelope.NotifySuccess | envelope.NotifyFailure | envelope.NotifyDelay}}},
		{name: "orcpt", in: "TO:<a@b> ORCPT=rfc822;a+2Bx@b",
			want: RcptArgs{To: envelope.Recipient{Address: ab, ORCPT: "rfc822;a+2Bx@b"}}},
		{name: "orcpt utf-8 xtext", in: `TO:<a@b> ORCPT=utf-8;\x{E9}@b`,
			want: RcptArgs{To: envelope.Recipient{Address: ab, ORCPT: `utf-8;\x{E9}@b`}}},
		{name: "orcpt utf-8 unitext", in: "TO:<a@b> ORCPT=UTF-8;é@b", smtputf8: true,
			want: RcptArgs{To: envelope.Recipient{Address: ab, ORCPT: "UTF-8;é@b"}}},
		{name: "both params", in: "TO:<a@b> ORCPT=rfc822;a@b NOTIFY=NEVER",
			want: RcptArgs{To: envelope.Recipient{Address: ab, Notify: envelope.NotifyNever, ORCPT: "rfc822;a@b"}}},
		{name: "utf8 allowed", in: "TO:<ü@b>", smtputf8: true, want: RcptArgs{To: envelope.Recipient{Address: envelope.Address{Local: "ü", Domain: "b"}}}},

		{name: "no to", in: "<a@b>", wantErr: ErrSyntax},
		{name: "from instead of to", in: "FROM:<a@b>", wantErr: ErrSyntax},
		{name: "null", in: "TO:<>", wantErr: ErrSyntax},
		{name: "no domain", in: "TO:<user>", wantErr: ErrSyntax},
		{name: "postmaster glued", in: "TO:<postmaster>X", wantErr: ErrSyntax},
		{name: "bad path", in: "TO:<a@b", wantErr: envelope.ErrBadAddress},
		{name: "utf8 not allowed", in: "TO:<ü@b>", wantErr: ErrUTF8Required},
		{name: "utf8 in route", in: "TO:<@ü.example:a@b>", wantErr: ErrUTF8Required},
		{name: "mail param", in: "TO:<a@b> SIZE=1", wantErr: ErrUnknownParam},
		{name: "unknown", in: "TO:<a@b> XFOO=1", wantErr: ErrUnknownParam},
		{name: "notify empty", in: "TO:<a@b> NOTIFY=", wantErr: ErrBadParamValue},
		{name: "notify missing", in: "TO:<a@b> NOTIFY", wantErr: ErrBadParamValue},
		{name: "notify never combined", in: "TO:<a@b> NOTIFY=NEVER,SUCCESS", wantErr: ErrBadParamValue},
		{name: "notify repeated keyword", in: "TO:<a@b> NOTIFY=SUCCESS,SUCCESS", wantErr: ErrBadParamValue},
		{name: "notify empty item", in: "TO:<a@b> NOTIFY=SUCCESS,", wantErr: ErrBadParamValue},
		{name: "notify unknown", in: "TO:<a@b> NOTIFY=ALWAYS", wantErr: ErrBadParamValue},
		{name: "notify twice", in: "TO:<a@b> NOTIFY=NEVER NOTIFY=NEVER", wantErr: ErrBadParamValue},
		{name: "orcpt no type", in: "TO:<a@b> ORCPT=a@b", wantErr: ErrBadParamValue},
		{name: "orcpt empty type", in: "TO:<a@b> ORCPT=;a@b", wantErr: ErrBadParamValue},
		{name: "orcpt bad type", in: "TO:<a@b> ORCPT=rfc(822);a@b", wantErr: ErrBadParamValue},
		{name: "orcpt empty address", in: "TO:<a@b> ORCPT=rfc822;", wantErr: ErrBadParamValue},
		{name: "orcpt bad xtext", in: "TO:<a@b> ORCPT=rfc822;a+@b", wantErr: ErrBadParamValue},
		{name: "orcpt utf8 without smtputf8", in: "TO:<a@b> ORCPT=utf-8;é@b", wantErr: ErrBadParamValue},
		{name: "orcpt utf8 rfc822 type", in: "TO:<a@b> ORCPT=rfc822;é@b", smtputf8: true, wantErr: ErrBadParamValue},
		{name: "orcpt too long", in: "TO:<a@b> ORCPT=rfc822;" + strings.Repeat("x", 500), wantErr: ErrBadParamValue},
		{name: "orcpt twice", in: "TO:<a@b> ORCPT=rfc822;a ORCPT=rfc822;a", wantErr: ErrBadParamValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRcpt(tt.in, tt.smtputf8)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseRcpt(%q) = %+v, %v; want %v", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRcpt(%q) error: %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseRcpt(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseBDAT(t *testing.T) {
	tests := []struct {
		in       string
		wantSize int64
		wantLast bool
		wantErr  bool
	}{
		{in: "100", wantSize: 100},
		{in: "0 LAST", wantSize: 0, wantLast: true},
		{in: "86 last", wantSize: 86, wantLast: true},
		{in: "9223372036854775807", wantSize: 9223372036854775807},
		{in: "", wantErr: true},
		{in: "LAST", wantErr: true},
		{in: " 100", wantErr: true},
		{in: "100 ", wantErr: true},
		{in: "100  LAST", wantErr: true},
		{in: "100 LAST ", wantErr: true},
		{in: "100 FIRST", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "+1", wantErr: true},
		{in: "1e3", wantErr: true},
		{in: "9223372036854775808", wantErr: true},
		{in: "100 LAſT", wantErr: true},
	}
	for _, tt := range tests {
		size, last, err := ParseBDAT(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("ParseBDAT(%q) = %d, %v, %v; want ErrSyntax", tt.in, size, last, err)
			}
			continue
		}
		if err != nil || size != tt.wantSize || last != tt.wantLast {
			t.Errorf("ParseBDAT(%q) = %d, %v, %v; want %d, %v, nil", tt.in, size, last, err, tt.wantSize, tt.wantLast)
		}
	}
}

func TestParseArgsString(t *testing.T) {
	m := MailArgs{From: envelope.Address{Local: "a", Domain: "b"}, Size: 10, Body: envelope.Body8BitMIME,
		SMTPUTF8: true, Ret: envelope.RetHdrs, EnvID: "x", Auth: "<>", RequireTLS: true}
	if got, want := m.String(), "FROM:<a@b> SIZE=10 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x AUTH=<> REQUIRETLS"; got != want {
		t.Errorf("MailArgs.String() = %q, want %q", got, want)
	}
	if got, want := (MailArgs{}).String(), "FROM:<>"; got != want {
		t.Errorf("MailArgs{}.String() = %q, want %q", got, want)
	}
	r := RcptArgs{To: envelope.Recipient{Address: envelope.Address{Local: "a", Domain: "b"},
		Notify: envelope.NotifyDelay | envelope.NotifySuccess, ORCPT: "rfc822;a@b"}}
	if got, want := r.String(), "TO:<a@b> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a@b"; got != want {
		t.Errorf("RcptArgs.String() = %q, want %q", got, want)
	}
}

// checkParseError fails unless err wraps exactly one of the sentinels the
// session maps to a reply.
func checkParseError(t *testing.T, err error) {
	t.Helper()
	n := 0
	for _, s := range []error{ErrSyntax, ErrUnknownParam, ErrBadParamValue} {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error %v wraps %d of the parse sentinels, want 1", err, n)
	}
	if !strings.HasPrefix(err.Error(), "smtp: ") {
		t.Fatalf("error %q lacks the smtp: prefix", err)
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"QUIT", "mail FROM:<a@b>", "NOOP  x", "", " X", "ABCDEFGHIJKLMNOPQ", "A\x00", "RSET\r", "BDAT 10 LAST"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		orig := string(line)
		cmd, err := ParseCommand(line)
		if err != nil {
			checkParseError(t, err)
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("ParseCommand error %v is not ErrSyntax", err)
			}
			return
		}
		if len(cmd.Verb) == 0 || len(cmd.Verb) > MaxVerbLength {
			t.Fatalf("verb %q has a bad length", cmd.Verb)
		}
		for i := 0; i < len(cmd.Verb); i++ {
			if c := cmd.Verb[i]; !('A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
				t.Fatalf("verb %q is not upper-case alphanumeric", cmd.Verb)
			}
		}
		if strings.ContainsAny(cmd.Arg, "\x00\r\n") {
			t.Fatalf("argument %q holds NUL, CR or LF", cmd.Arg)
		}
		rebuilt := cmd.Verb
		if len(orig) > len(cmd.Verb) {
			rebuilt += " " + cmd.Arg
		}
		if !strings.EqualFold(rebuilt, orig) || rebuilt[len(cmd.Verb):] != orig[len(cmd.Verb):] {
			t.Fatalf("ParseCommand(%q) = %+v does not rebuild the line", orig, cmd)
		}
		for i := range line {
			line[i] = 'x'
		}
		if again, _ := ParseCommand([]byte(orig)); again != cmd {
			t.Fatalf("Command changed with its line buffer: %+v, want %+v", cmd, again)
		}
	})
}

func FuzzParseMail(f *testing.F) {
	for _, s := range []string{
		"FROM:<a@b>", "FROM:<>", "from: <a@b> SIZE=10 BODY=8bitmime", "FROM:<ü@b> SMTPUTF8",
		"FROM:<a@b> SIZE=1 SIZE=2", "FROM:<> ENVID=a+2Bb AUTH=<>", "FROM:<> RET=HDRS FOO=bar",
		"FROM:<@r:a@[IPv6:::1]>", "FROM:<\"q\\\"x\"@b>", "FROM:<a@b> REQUIRETLS SMTPUTF8",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		m, err := ParseMail(arg)
		if err != nil {
			checkParseError(t, err)
			return
		}
		if m.Size < 0 {
			t.Fatalf("negative size %d", m.Size)
		}
		if !m.SMTPUTF8 && !isASCII(m.From.String()) {
			t.Fatalf("UTF-8 sender %q without SMTPUTF8", m.From)
		}
		if m.EnvID != "" && !ValidXText(m.EnvID) {
			t.Fatalf("ENVID %q is not xtext", m.EnvID)
		}
		s := m.String()
		again, err := ParseMail(s)
		if err != nil {
			t.Fatalf("ParseMail(%q) (from %q): %v", s, arg, err)
		}
		if diff := cmp.Diff(m, again); diff != "" {
			t.Fatalf("ParseMail(%q) differs from ParseMail(%q) (-first +again):\n%s", s, arg, diff)
		}
	})
}

func FuzzParseRcpt(f *testing.F) {
	for _, s := range []string{
		"TO:<a@b>", "TO:<postmaster>", "to: <a@b> NOTIFY=SUCCESS,DELAY", "TO:<ü@b>",
		"TO:<a@b> ORCPT=rfc822;a+2Bb", "TO:<a@b> NOTIFY=NEVER,DELAY", "TO:<@x,@y:a@b>", "TO:<>",
		`TO:<a@b> ORCPT=utf-8;\x{E9}@b`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, arg string, smtputf8 bool) {
		r, err := ParseRcpt(arg, smtputf8)
		if err != nil {
			checkParseError(t, err)
			return
		}
		if r.To.Address.IsNull() {
			t.Fatalf("null recipient from %q", arg)
		}
		if r.Postmaster != (r.To.Address.Domain == "") {
			t.Fatalf("Postmaster=%v for %+v", r.Postmaster, r.To.Address)
		}
		if !smtputf8 && !isASCII(r.String()) {
			t.Fatalf("UTF-8 in %q without SMTPUTF8", r.String())
		}
		s := r.String()
		again, err := ParseRcpt(s, smtputf8)
		if err != nil {
			t.Fatalf("ParseRcpt(%q) (from %q): %v", s, arg, err)
		}
		if diff := cmp.Diff(r, again); diff != "" {
			t.Fatalf("ParseRcpt(%q) differs from ParseRcpt(%q) (-first +again):\n%s", s, arg, diff)
		}
		if !smtputf8 {
			if wide, err := ParseRcpt(arg, true); err != nil || !cmp.Equal(wide, r) {
				t.Fatalf("ParseRcpt(%q, true) = %+v, %v; want %+v", arg, wide, err, r)
			}
		}
	})
}

func BenchmarkParseMail(b *testing.B) {
	arg := "FROM:<someone.sender@mail.example.com> SIZE=123456 BODY=8BITMIME ENVID=QQ314159 RET=HDRS"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseMail(arg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseCommand(b *testing.B) {
	line := []byte("RCPT TO:<someone.recipient@mail.example.com> NOTIFY=SUCCESS,FAILURE")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCommand(line); err != nil {
			b.Fatal(err)
		}
	}
}
