package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// sizeUnits maps a lower-cased size unit to its multiplier. KB, MB, GB and
// TB are powers of 1024, as in Postfix and most mail server settings, so
// "1KB" and "1KiB" are both 1024 bytes.
func sizeUnit(unit string) (int64, bool) {
	switch strings.ToLower(unit) {
	case "", "b":
		return 1, true
	case "kb", "kib":
		return 1 << 10, true
	case "mb", "mib":
		return 1 << 20, true
	case "gb", "gib":
		return 1 << 30, true
	case "tb", "tib":
		return 1 << 40, true
	}
	return 0, false
}

// ParseSize parses a size in bytes: a whole number, optionally followed by a
// unit (spaces between them are allowed): B, or KB, MB, GB, TB, which are
// powers of 1024 ("1KB" is 1024 bytes), or the same in IEC spelling KiB,
// MiB, GiB, TiB. Units are case-insensitive. "25MB" is 26214400.
// Fractions, signs and sizes over math.MaxInt64 are errors.
func ParseSize(s string) (int64, error) {
	n, err := parseSize(s)
	if err != nil {
		return 0, fmt.Errorf("config: invalid size %q: %w", s, err)
	}
	return n, nil
}

func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	digits, unit := s[:i], strings.TrimSpace(s[i:])
	if digits == "" {
		return 0, errors.New(`want a whole number of bytes with an optional unit, as in "25MB", "512KB" or "1048576"`)
	}
	mult, ok := sizeUnit(unit)
	if !ok {
		if strings.HasPrefix(unit, ".") {
			return 0, errors.New(`want a whole number: use a smaller unit, as in "1536KB" for 1.5MB`)
		}
		return 0, fmt.Errorf("unknown unit %q (use B, KB, MB, GB or TB, which are powers of 1024, or KiB, MiB, GiB, TiB)", unit)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, errors.New("too large")
	}
	return n * mult, nil
}

// ParseDuration parses a duration in the syntax of time.ParseDuration
// ("90s", "1h30m", "-5m"), extended with a leading whole number of days:
// "5d" is 120h and "1d12h" is 36h. A day is always 24 hours.
func ParseDuration(s string) (time.Duration, error) {
	d, err := parseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("config: invalid duration %q: %w", s, err)
	}
	return d, nil
}

const durationHint = `want a number and a unit (ns, us, ms, s, m, h or d), as in "30s", "5m" or "1d12h"`

func parseDuration(s string) (time.Duration, error) {
	days, rest, hasDays := strings.Cut(s, "d")
	if !hasDays {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, errors.New(durationHint)
		}
		return d, nil
	}
	neg := false
	if days != "" && (days[0] == '-' || days[0] == '+') {
		neg = days[0] == '-'
		days = days[1:]
	}
	if days == "" || strings.TrimLeft(days, "0123456789") != "" {
		return 0, errors.New(`days must come first, as a whole number, as in "1d12h"`)
	}
	n, err := strconv.ParseInt(days, 10, 64)
	const day = 24 * time.Hour
	if err != nil || n > int64(math.MaxInt64/day) {
		return 0, errors.New("too long")
	}
	d := time.Duration(n) * day
	if rest != "" {
		if rest[0] == '-' || rest[0] == '+' {
			return 0, errors.New(durationHint)
		}
		r, err := time.ParseDuration(rest)
		if err != nil {
			return 0, errors.New(durationHint)
		}
		if r > math.MaxInt64-d {
			return 0, errors.New("too long")
		}
		d += r
	}
	if neg {
		d = -d
	}
	return d, nil
}
