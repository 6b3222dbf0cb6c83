package smtp

import (
	"errors"
	"testing"
)

func TestXText(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{name: "empty", in: "", want: ""},
		{name: "plain", in: "abc@example.com", want: "abc@example.com"},
		{name: "plus", in: "a+2Bb", want: "a+b"},
		{name: "equals", in: "a+3Db", want: "a=b"},
		{name: "space", in: "a+20b", want: "a b"},
		{name: "lower hex", in: "a+2bb", want: "a+b"},
		{name: "high byte", in: "+C3+BC", want: "ü"},
		{name: "unneeded escape", in: "+41", want: "A"},
		{name: "specials", in: `!"#$%&'()*,-./:;<>?[\]^_{|}~`, want: `!"#$%&'()*,-./:;<>?[\]^_{|}~`},
		{name: "raw equals", in: "a=b", wantErr: true},
		{name: "raw space", in: "a b", wantErr: true},
		{name: "plus at end", in: "a+", wantErr: true},
		{name: "plus one digit", in: "a+2", wantErr: true},
		{name: "plus non hex", in: "a+2G", wantErr: true},
		{name: "non ascii", in: "ü", wantErr: true},
		{name: "control", in: "a\x01", wantErr: true},
		{name: "del", in: "a\x7f", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeXText(tt.in)
			if tt.wantErr {
				if err == nil || !errors.Is(err, ErrBadXText) || !errors.Is(err, ErrBadParamValue) {
					t.Fatalf("DecodeXText(%q) = %q, %v; want an ErrBadXText error", tt.in, got, err)
				}
				if ValidXText(tt.in) {
					t.Errorf("ValidXText(%q) = true, want false", tt.in)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("DecodeXText(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			if !ValidXText(tt.in) {
				t.Errorf("ValidXText(%q) = false, want true", tt.in)
			}
		})
	}
}

func TestEncodeXText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"user@example.com", "user@example.com"},
		{"a+b=c d", "a+2Bb+3Dc+20d"},
		{"ü", "+C3+BC"},
		{"\x00\x7f\r\n", "+00+7F+0D+0A"},
	}
	for _, tt := range tests {
		if got := EncodeXText(tt.in); got != tt.want {
			t.Errorf("EncodeXText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzXText(f *testing.F) {
	for _, s := range []string{"", "a+2Bb", "+C3+BC", "a=b", "a+", "a+2g", "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := EncodeXText(s)
		if !ValidXText(enc) {
			t.Fatalf("EncodeXText(%q) = %q is not valid xtext", s, enc)
		}
		dec, err := DecodeXText(enc)
		if err != nil || dec != s {
			t.Fatalf("DecodeXText(EncodeXText(%q)) = %q, %v", s, dec, err)
		}
		dec, err = DecodeXText(s)
		if (err == nil) != ValidXText(s) {
			t.Fatalf("DecodeXText(%q) error %v disagrees with ValidXText", s, err)
		}
		if err == nil && len(dec) > len(s) {
			t.Fatalf("DecodeXText(%q) = %q is longer than its input", s, dec)
		}
	})
}
