package sdk

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		stage Stage
		d     Decision
		ok    bool
	}{
		{"continue zero", StageRcpt, Decision{}, true},
		{"continue with code", StageRcpt, Decision{Code: 250}, false},
		{"drop with enhanced", StageRcpt, Decision{Verdict: Drop, Enhanced: EnhancedCode{2, 0, 0}}, false},
		{"accept default", StageRcpt, AcceptDecision(), true},
		{"accept 250", StageRcpt, Decision{Verdict: Accept, Code: 250, Enhanced: EnhancedCode{2, 1, 5}}, true},
		{"accept 354 at rcpt", StageRcpt, Decision{Verdict: Accept, Code: 354}, false},
		{"accept 354 at command", StageCommand, Decision{Verdict: Accept, Code: 354}, true},
		{"accept enhanced class 5", StageMail, Decision{Verdict: Accept, Enhanced: EnhancedCode{5, 0, 0}}, false},
		{"reject 550 5.7.1", StageRcpt, RejectDecision(550, EnhancedCode{5, 7, 1}, "no"), true},
		{"reject defaults", StageRcpt, RejectDecision(0, EnhancedCode{}, ""), true},
		{"reject with 4xx", StageRcpt, RejectDecision(450, EnhancedCode{5, 7, 1}, "no"), false},
		{"reject with class 4 enhanced", StageRcpt, RejectDecision(550, EnhancedCode{4, 7, 1}, "no"), false},
		{"defer 451 4.7.1", StageMail, DeferDecision(451, EnhancedCode{4, 7, 1}, "later"), true},
		{"defer with 5xx", StageMail, DeferDecision(550, EnhancedCode{}, ""), false},
		{"defer with class 5 enhanced", StageMail, DeferDecision(451, EnhancedCode{5, 7, 1}, ""), false},
		{"defer subject out of range", StageMail, DeferDecision(451, EnhancedCode{4, 1000, 1}, ""), false},
		{"message with CRLF", StageRcpt, RejectDecision(550, EnhancedCode{}, "a\r\nMAIL FROM:<x>"), false},
		{"message with NUL", StageRcpt, RejectDecision(550, EnhancedCode{}, "a\x00"), false},
		{"message too long", StageRcpt, RejectDecision(550, EnhancedCode{}, strings.Repeat("x", MaxMessageLen+1)), false},
		{"message at limit", StageRcpt, RejectDecision(550, EnhancedCode{}, strings.Repeat("x", MaxMessageLen)), true},
		{"disconnect on reject", StageHelo, Decision{Verdict: Reject, Disconnect: true}, true},
		{"disconnect on accept", StageHelo, Decision{Verdict: Accept, Disconnect: true}, false},
		{"unknown verdict", StageHelo, Decision{Verdict: 9}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.d.Validate(tt.stage)
			if (err == nil) != tt.ok {
				t.Fatalf("Validate(%s) = %v, want ok=%v", tt.stage, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidDecision) {
				t.Errorf("error %v does not wrap ErrInvalidDecision", err)
			}
		})
	}
}

func TestParseEnhancedCode(t *testing.T) {
	good := map[string]EnhancedCode{
		"5.7.1":     {5, 7, 1},
		"4.2.0":     {4, 2, 0},
		"2.0.0":     {2, 0, 0},
		"5.999.999": {5, 999, 999},
	}
	for in, want := range good {
		got, err := ParseEnhancedCode(in)
		if err != nil || got != want {
			t.Errorf("ParseEnhancedCode(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "5", "5.7", "5.7.", "3.0.0", "6.0.0", "5.1000.1", "5.7.1 ", "x.7.1", "5..1", "5.7.1.2"} {
		if got, err := ParseEnhancedCode(in); err == nil {
			t.Errorf("ParseEnhancedCode(%q) = %v, want error", in, got)
		}
	}
}

func TestVerdictString(t *testing.T) {
	want := []string{"continue", "accept", "reject", "defer", "drop"}
	for v, w := range want {
		if got := Verdict(v).String(); got != w {
			t.Errorf("Verdict(%d).String() = %q, want %q", v, got, w)
		}
	}
}

func TestEnhancedCodeString(t *testing.T) {
	for _, tc := range []struct {
		e    EnhancedCode
		want string
	}{
		{EnhancedCode{5, 7, 1}, "5.7.1"},
		{EnhancedCode{2, 0, 0}, "2.0.0"},
		{EnhancedCode{}, "0.0.0"},
		{EnhancedCode{4, 999, 999}, "4.999.999"},
		{EnhancedCode{65535, 10, 65535}, "65535.10.65535"},
	} {
		if got := tc.e.String(); got != tc.want {
			t.Errorf("%v.String() = %q, want %q", [3]uint16(tc.e), got, tc.want)
		}
		if got := string(tc.e.Append([]byte("x "))); got != "x "+tc.want {
			t.Errorf("%v.Append(\"x \") = %q, want %q", [3]uint16(tc.e), got, "x "+tc.want)
		}
	}
}
