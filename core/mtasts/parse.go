package mtasts

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ParsePolicy parses a policy file (RFC 8461 §3.2): "key: value" lines
// ended by LF or CRLF; version STSv1, mode and max_age once each, mx once
// or more (it may be absent when the mode is none). Other keys are
// ignored; empty lines and a UTF-8 byte order mark are tolerated. A
// max_age over MaxMaxAge is cut to it. Errors wrap ErrInvalid.
func ParsePolicy(body []byte) (*Policy, error) {
	p, err := parsePolicy(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return p, nil
}

// parsePolicy is ParsePolicy with errors that do not wrap ErrInvalid.
func parsePolicy(body []byte) (*Policy, error) {
	body = bytes.TrimPrefix(body, []byte("\uFEFF"))
	if !utf8.Valid(body) {
		return nil, errors.New("not UTF-8")
	}
	var (
		p    Policy
		seen = make(map[string]bool)
	)
	for n, line := range strings.Split(string(body), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.Trim(line, " \t") == "" {
			continue
		}
		key, value, err := splitField(line)
		if err == nil {
			err = p.set(key, value, seen)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
	}
	for _, key := range []string{"version", "mode", "max_age"} {
		if !seen[key] {
			return nil, fmt.Errorf("no %s", key)
		}
	}
	if len(p.MX) == 0 && p.Mode != ModeNone {
		return nil, fmt.Errorf("no mx in mode %s", p.Mode)
	}
	return &p, nil
}

// splitField splits a policy line into its key and its value without the
// white space around it.
func splitField(line string) (key, value string, err error) {
	key, value, ok := strings.Cut(line, ":")
	if !ok {
		return "", "", errors.New("no colon")
	}
	if !validFieldName(key) {
		return "", "", fmt.Errorf("bad key %q", key)
	}
	value = strings.Trim(value, " \t")
	for _, r := range value {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return "", "", fmt.Errorf("%s: control character in value", key)
		}
	}
	return key, value, nil
}

// set records one field in p; seen holds the keys set so far.
func (p *Policy) set(key, value string, seen map[string]bool) error {
	switch key {
	case "version", "mode", "max_age":
		if seen[key] {
			return fmt.Errorf("%s given twice", key)
		}
	case "mx":
	default:
		return nil // an extension (§3.2: ignored)
	}
	seen[key] = true
	switch key {
	case "version":
		if value != "STSv1" {
			return fmt.Errorf("version %q is not STSv1", value)
		}
	case "mode":
		switch m := Mode(value); m {
		case ModeEnforce, ModeTesting, ModeNone:
			p.Mode = m
		default:
			return fmt.Errorf("mode %q is not enforce, testing or none", value)
		}
	case "max_age":
		age, err := parseMaxAge(value)
		if err != nil {
			return err
		}
		p.MaxAge = age
	case "mx":
		if !validMXPattern(value) {
			return fmt.Errorf("mx %q is not a host name or *.host name", value)
		}
		p.MX = append(p.MX, value)
	}
	return nil
}

// parseMaxAge reads 1 to 10 digits of seconds, cut to MaxMaxAge.
func parseMaxAge(s string) (time.Duration, error) {
	if len(s) == 0 || len(s) > 10 || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("max_age %q is not 1 to 10 digits", s)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("max_age %q: %w", s, err)
	}
	// Compared as seconds: 10 digits of seconds overflow a Duration.
	return time.Duration(min(n, int64(MaxMaxAge/time.Second))) * time.Second, nil
}

// validMXPattern: ["*."] Domain, Domain as in RFC 5321 §4.1.2.
func validMXPattern(s string) bool {
	return validHostName(strings.TrimPrefix(s, "*."))
}

// validHostName: dot-separated labels of letters, digits and inner
// hyphens, each of 1 to 63 bytes, 253 bytes in all.
func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

// validFieldName: (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / "."),
// the name of a field of the policy and of the TXT record.
func validFieldName(s string) bool {
	if len(s) == 0 || len(s) > 32 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// recordVersion starts every MTA-STS TXT record.
const recordVersion = "v=STSv1"

// isSTSRecord reports whether txt claims to be an MTA-STS record: it
// begins with v=STSv1 followed by a separator or nothing (§3.1; records
// that do not are someone else's and are ignored).
func isSTSRecord(txt string) bool {
	rest, ok := strings.CutPrefix(txt, recordVersion)
	return ok && (rest == "" || rest[0] == ';' || rest[0] == ' ' || rest[0] == '\t')
}

// ParseRecord parses an MTA-STS TXT record (RFC 8461 §3.1),
// "v=STSv1; id=20160831085700Z;", and returns its id: 1 to 32 letters and
// digits. Other fields must be well formed and are ignored; a field given
// twice is an error.
func ParseRecord(txt string) (id string, err error) {
	if !isSTSRecord(txt) {
		return "", fmt.Errorf("mtasts: record %q does not begin with %s", txt, recordVersion)
	}
	fields := strings.Split(txt[len(recordVersion):], ";")
	if strings.Trim(fields[0], " \t") != "" {
		return "", fmt.Errorf("mtasts: record %q: no ; after %s", txt, recordVersion)
	}
	seen := map[string]bool{"v": true}
	for i, f := range fields[1:] {
		f = strings.Trim(f, " \t")
		if f == "" && i == len(fields)-2 && i > 0 {
			break // one separator may end the record
		}
		name, value, ok := strings.Cut(f, "=")
		switch {
		case !ok || !validFieldName(name) || !validRecordValue(value):
			return "", fmt.Errorf("mtasts: record %q: bad field %q", txt, f)
		case seen[name]:
			return "", fmt.Errorf("mtasts: record %q: %s given twice", txt, name)
		case name == "id" && !validID(value):
			return "", fmt.Errorf("mtasts: record %q: id %q is not 1 to 32 letters and digits", txt, value)
		}
		seen[name] = true
		if name == "id" {
			id = value
		}
	}
	if id == "" {
		return "", fmt.Errorf("mtasts: record %q has no id", txt)
	}
	return id, nil
}

// validRecordValue: 1*(%x21-3A / %x3C / %x3E-7E).
func validRecordValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == ';' || c == '=' {
			return false
		}
	}
	return true
}

// validID: 1*32(ALPHA / DIGIT).
func validID(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}
