package arc

import (
	"errors"
	"fmt"
	"strings"
)

// tag is one tag-spec of a DKIM-style tag list (RFC 6376 §3.2). Value has
// its surrounding whitespace trimmed; start and end delimit, in the text
// parsed, everything between the '=' and the next ';' (or the end), which
// is what is blanked when the b= value is removed before hashing.
type tag struct {
	name, value string
	start, end  int
}

// tagList is a parsed tag list, in the order the tags appeared.
type tagList []tag

var errTagSyntax = errors.New("tag list syntax")

// parseTags parses a tag list: tag-spec *( ";" tag-spec ) [ ";" ]. Tag names
// are ALPHA *(ALPHA / DIGIT / "_"); values are printable ASCII except ';',
// with folding whitespace allowed between words. A tag appearing twice is an
// error, as RFC 6376 requires.
func parseTags(s string) (tagList, error) {
	var tags tagList
	seen := make(map[string]bool)
	pos := 0
	for pos <= len(s) {
		semi := strings.IndexByte(s[pos:], ';')
		end := len(s)
		if semi >= 0 {
			end = pos + semi
		}
		spec := s[pos:end]
		if strings.TrimSpace(spec) == "" {
			if semi >= 0 || len(tags) == 0 && pos > 0 {
				return nil, fmt.Errorf("%w: empty tag-spec at %d", errTagSyntax, pos)
			}
			break // an optional trailing ";" or an empty list
		}
		t, err := parseTagSpec(spec, pos)
		if err != nil {
			return nil, err
		}
		if seen[t.name] {
			return nil, fmt.Errorf("%w: tag %q appears twice", errTagSyntax, t.name)
		}
		seen[t.name] = true
		tags = append(tags, t)
		if semi < 0 {
			break
		}
		pos = end + 1
		if strings.TrimSpace(s[pos:]) == "" {
			break
		}
	}
	return tags, nil
}

// parseTagSpec parses one "name = value" whose text starts at offset base.
func parseTagSpec(spec string, base int) (tag, error) {
	eq := strings.IndexByte(spec, '=')
	if eq < 0 {
		return tag{}, fmt.Errorf("%w: no '=' in %q", errTagSyntax, spec)
	}
	name := strings.Trim(spec[:eq], fws)
	if !validTagName(name) {
		return tag{}, fmt.Errorf("%w: bad tag name %q", errTagSyntax, name)
	}
	value := strings.Trim(spec[eq+1:], fws)
	for i := 0; i < len(value); i++ {
		c := value[i]
		if (c < 0x21 || c > 0x7e) && !strings.ContainsRune(fws, rune(c)) {
			return tag{}, fmt.Errorf("%w: bad character %q in tag %s", errTagSyntax, c, name)
		}
	}
	return tag{name: name, value: value, start: base + eq + 1, end: base + len(spec)}, nil
}

const fws = " \t\r\n"

func validTagName(n string) bool {
	if n == "" || !isAlpha(n[0]) {
		return false
	}
	for i := 1; i < len(n); i++ {
		c := n[i]
		if !isAlpha(c) && !(c >= '0' && c <= '9') && c != '_' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// get returns the value of the named tag and whether it is present.
func (l tagList) get(name string) (string, bool) {
	for _, t := range l {
		if t.name == name {
			return t.value, true
		}
	}
	return "", false
}

// find returns the named tag.
func (l tagList) find(name string) (tag, bool) {
	for _, t := range l {
		if t.name == name {
			return t, true
		}
	}
	return tag{}, false
}

// require returns an error naming the first of names that is missing.
func (l tagList) require(names ...string) error {
	for _, n := range names {
		if _, ok := l.get(n); !ok {
			return fmt.Errorf("missing %s= tag", n)
		}
	}
	return nil
}

// stripSpace removes all whitespace, as base64 values (b=, bh=, p=) need.
func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if strings.ContainsRune(fws, r) {
			return -1
		}
		return r
	}, s)
}
