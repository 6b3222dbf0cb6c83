package srs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var r = Rewriter{Domain: "example.test", Secret: "s3cret", MaxAge: 21}

// day0 is 2026-03-01 00:00 UTC, day number 20513: TT "BB" (33 = 20513 % 1024).
var day0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// TestForwardGolden pins the address down: scripts/aliases.lua makes the
// same one (scripts/twins_test.go checks that the two agree).
func TestForwardGolden(t *testing.T) {
	got := r.Forward("carol", "Sender.test", day0.Add(23*time.Hour))
	if want := "SRS0=" + r.hash("BB", "sender.test", "carol") + "=BB=Sender.test=carol@example.test"; got != want {
		t.Fatalf("Forward = %q, want %q", got, want)
	}
	if want := "SRS0=JDRH=BB=Sender.test=carol@example.test"; got != want {
		t.Errorf("Forward = %q, want %q (the hash changed: addresses already sent no longer work)", got, want)
	}
}

func TestReverse(t *testing.T) {
	addr := r.Forward("carol", "sender.test", day0)
	forged := strings.Replace(addr, "=carol@", "=mallory@", 1)
	tests := []struct {
		name string
		addr string
		now  time.Time
		want string
		err  error
	}{
		{"same day", addr, day0, "carol@sender.test", nil},
		{"any case", strings.ToLower(addr), day0, "carol@sender.test", nil},
		{"separator +", strings.Replace(addr, "SRS0=", "srs0+", 1), day0, "carol@sender.test", nil},
		{"max age", addr, day0.Add(21 * 24 * time.Hour), "carol@sender.test", nil},
		{"past the max age", addr, day0.Add(22 * 24 * time.Hour), "", ErrExpired},
		{"from the future", addr, day0.Add(-24 * time.Hour), "", ErrExpired},
		{"tampered", forged, day0, "", ErrBadHash},
		{"bad timestamp", strings.Replace(addr, "=BB=", "=B!=", 1), day0, "", ErrBadHash},
		{"another domain", strings.Replace(addr, "@example.test", "@example.org", 1), day0, "", ErrNotSRS},
		{"not SRS", "carol@example.test", day0, "", ErrNotSRS},
		{"SRS1", strings.Replace(addr, "SRS0", "SRS1", 1), day0, "", ErrNotSRS},
		{"a field missing", "SRS0=HHHH=AB=sender.test@example.test", day0, "", ErrNotSRS},
		{"no @", "SRS0=HHHH=AB=sender.test=carol", day0, "", ErrNotSRS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Reverse(tt.addr, tt.now)
			if got != tt.want || !errors.Is(err, tt.err) {
				t.Errorf("Reverse(%q) = %q, %v; want %q, %v", tt.addr, got, err, tt.want, tt.err)
			}
		})
	}
}

// The timestamp wraps at 1024 days: an address made just before the wrap
// is valid just after it.
func TestReverseWraps(t *testing.T) {
	before := time.Unix((1024*20+1023)*86400, 0)
	addr := r.Forward("a=b", "sender.test", before)
	if !strings.Contains(addr, "=77=") {
		t.Fatalf("Forward = %q, want the timestamp 77 (1023)", addr)
	}
	got, err := r.Reverse(addr, before.Add(3*24*time.Hour))
	if got != "a=b@sender.test" || err != nil {
		t.Errorf("Reverse after the wrap = %q, %v", got, err)
	}
}
