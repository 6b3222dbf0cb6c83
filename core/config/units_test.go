package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	good := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"100", 100},
		{"100B", 100},
		{"512KB", 512 << 10},
		{"512KiB", 512 << 10},
		{"25MB", 25 << 20},
		{"25MiB", 25 << 20},
		{"25mb", 25 << 20},
		{"1GB", 1 << 30},
		{"1GiB", 1 << 30},
		{"2TB", 2 << 40},
		{"25 MB", 25 << 20},
		{" 1KB ", 1024},
		{"9223372036854775807", 1<<63 - 1},
		{"8589934591GB", 8589934591 << 30},
	}
	for _, tt := range good {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("ParseSize(%q): got %d, %v; want %d, nil", tt.in, got, err, tt.want)
			}
		})
	}
	bad := []struct {
		in, why string
	}{
		{"", "want a whole number"},
		{"MB", "want a whole number"},
		{"-1MB", "want a whole number"},
		{"+1MB", "want a whole number"},
		{"1.5MB", "use a smaller unit"},
		{"25XB", `unknown unit "XB"`},
		{"25M", `unknown unit "M"`},
		{"1 2", `unknown unit "2"`},
		{"9223372036854775808", "too large"},
		{"8589934592GB", "too large"},
	}
	for _, tt := range bad {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if err == nil {
				t.Fatalf("ParseSize(%q): got %d, nil; want an error", tt.in, got)
			}
			if !strings.HasPrefix(err.Error(), "config: invalid size ") || !strings.Contains(err.Error(), tt.why) {
				t.Errorf("ParseSize(%q): got error %q, want config: invalid size … %s", tt.in, err, tt.why)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	good := []struct {
		in   string
		want time.Duration
	}{
		{"0", 0},
		{"30s", 30 * time.Second},
		{"5m", 5 * time.Minute},
		{"1h30m", 90 * time.Minute},
		{"1.5h", 90 * time.Minute},
		{"250ms", 250 * time.Millisecond},
		{"-5m", -5 * time.Minute},
		{"1d", 24 * time.Hour},
		{"5d", 120 * time.Hour},
		{"1d12h", 36 * time.Hour},
		{"1d30m15s", 24*time.Hour + 30*time.Minute + 15*time.Second},
		{"0d", 0},
		{"-1d12h", -36 * time.Hour},
		{"106751d", 106751 * 24 * time.Hour},
	}
	for _, tt := range good {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("ParseDuration(%q): got %v, %v; want %v, nil", tt.in, got, err, tt.want)
			}
		})
	}
	bad := []struct {
		in, why string
	}{
		{"", "want a number and a unit"},
		{"30", "want a number and a unit"},
		{"5 minutes", "want a number and a unit"},
		{"5x", "want a number and a unit"},
		{"d", "days must come first"},
		{"1.5d", "days must come first"},
		{"12h1d", "days must come first"},
		{"1d-12h", "want a number and a unit"},
		{"1d12", "want a number and a unit"},
		{"1dd", "want a number and a unit"},
		{"106752d", "too long"},
		{"106751d24h", "too long"},
	}
	for _, tt := range bad {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if err == nil {
				t.Fatalf("ParseDuration(%q): got %v, nil; want an error", tt.in, got)
			}
			if !strings.HasPrefix(err.Error(), "config: invalid duration ") || !strings.Contains(err.Error(), tt.why) {
				t.Errorf("ParseDuration(%q): got error %q, want config: invalid duration … %s", tt.in, err, tt.why)
			}
		})
	}
}
