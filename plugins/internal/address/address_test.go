package address

import (
	"strings"
	"testing"

	"github.com/mailgate/gateway/sdk"
)

func TestValidDomain(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"example.test", true},
		{"a", true},
		{"xn--bcher-kva.example", true},
		{"bücher.example", true},
		{"under_score.example", true},
		{"", false},
		{".example", false},
		{"example..test", false},
		{"example.test.", false},
		{strings.Repeat("a", 64) + ".test", false},
		{strings.Repeat("a.", 128) + "test", false},
		{"ex ample.test", false},
		{"a@b.test", false},
		{"a,b.test", false},
		{`a"b.test`, false},
		{`a\b.test`, false},
		{"<a.test", false},
		{"a.test>", false},
		{"a\x7f.test", false},
		{"a\tb.test", false},
	}
	for _, tt := range tests {
		if got := ValidDomain(tt.in); got != tt.want {
			t.Errorf("ValidDomain(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		in   string
		want sdk.Address
	}{
		{"alice@example.test", sdk.Address{Local: "alice", Domain: "example.test"}},
		{`"a@b"@example.test`, sdk.Address{Local: `"a@b"`, Domain: "example.test"}},
		{"postmaster", sdk.Address{Local: "postmaster"}},
		{"", sdk.Address{}},
	}
	for _, tt := range tests {
		if got := Split(tt.in); got != tt.want {
			t.Errorf("Split(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}
