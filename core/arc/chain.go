package arc

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Header field names of an ARC set.
const (
	hdrSeal = "ARC-Seal"
	hdrAMS  = "ARC-Message-Signature"
	hdrAAR  = "ARC-Authentication-Results"
)

// arcSet is one instance's three fields with their parsed contents.
type arcSet struct {
	instance    int
	aar         *field
	ams, seal   *field
	amsTags     tagList
	sealTags    tagList
	authResults string
}

// arcKind tells which ARC field a header field is, or "".
func arcKind(name string) string {
	for _, k := range []string{hdrSeal, hdrAMS, hdrAAR} {
		if strings.EqualFold(name, k) {
			return k
		}
	}
	return ""
}

// collectSets gathers the ARC sets of a message and checks the structure
// RFC 8617 §5.1.1 and §5.2 step 3 ask for: every field has an instance
// between 1 and 50, each instance has exactly one field of each kind, and
// the instances run 1..N without a gap. The sets come back in instance
// order; none is not an error.
func collectSets(fields []field) ([]*arcSet, error) {
	byInstance := make(map[int]*arcSet)
	highest := 0
	for i := range fields {
		f := &fields[i]
		kind := arcKind(f.name)
		if kind == "" {
			continue
		}
		s, err := addField(byInstance, kind, f)
		if err != nil {
			return nil, err
		}
		highest = max(highest, s.instance)
	}
	sets := make([]*arcSet, 0, highest)
	for i := 1; i <= highest; i++ {
		s := byInstance[i]
		switch {
		case s == nil:
			return nil, fmt.Errorf("no ARC set i=%d below i=%d", i, highest)
		case s.aar == nil || s.ams == nil || s.seal == nil:
			return nil, fmt.Errorf("ARC set i=%d is incomplete", i)
		}
		sets = append(sets, s)
	}
	return sets, nil
}

// addField parses f and files it under its instance.
func addField(byInstance map[int]*arcSet, kind string, f *field) (*arcSet, error) {
	var (
		n    int
		tags tagList
		aar  string
		err  error
	)
	if kind == hdrAAR {
		n, aar, err = parseAAR(f.value)
	} else if tags, err = parseTags(f.value); err == nil {
		n, err = tagInstance(tags)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	s := byInstance[n]
	if s == nil {
		s = &arcSet{instance: n}
		byInstance[n] = s
	}
	var dup bool
	switch kind {
	case hdrAAR:
		dup, s.aar, s.authResults = s.aar != nil, f, aar
	case hdrAMS:
		dup, s.ams, s.amsTags = s.ams != nil, f, tags
	case hdrSeal:
		dup, s.seal, s.sealTags = s.seal != nil, f, tags
	}
	if dup {
		return nil, fmt.Errorf("two %s fields with i=%d", kind, n)
	}
	return s, nil
}

func tagInstance(tags tagList) (int, error) {
	v, ok := tags.get("i")
	if !ok {
		return 0, errors.New("no i= tag")
	}
	return parseInstance(v)
}

// parseInstance parses an instance number: digits, 1 to MaxSets.
func parseInstance(v string) (int, error) {
	if v == "" || len(v) > 3 || strings.Trim(v, "0123456789") != "" {
		return 0, fmt.Errorf("bad instance %q", v)
	}
	n, _ := strconv.Atoi(v)
	if n < 1 || n > MaxSets {
		return 0, fmt.Errorf("instance %d out of 1..%d", n, MaxSets)
	}
	return n, nil
}

// parseAAR splits an ARC-Authentication-Results value, "i=N; payload",
// into the instance and the unfolded payload.
func parseAAR(value string) (int, string, error) {
	semi := strings.IndexByte(value, ';')
	if semi < 0 {
		return 0, "", errors.New("no ';' after i=")
	}
	name, v, ok := strings.Cut(value[:semi], "=")
	if !ok || strings.Trim(name, fws) != "i" {
		return 0, "", errors.New("does not start with i=")
	}
	n, err := parseInstance(strings.Trim(v, fws))
	if err != nil {
		return 0, "", err
	}
	payload := strings.TrimSuffix(relaxedHeader("", value[semi+1:]), "\r\n")
	return n, strings.TrimPrefix(payload, ":"), nil
}

// highestInstance returns the greatest instance number among the ARC fields
// that carry a readable one, whatever the chain's structure.
func highestInstance(fields []field) int {
	highest := 0
	for _, f := range fields {
		kind := arcKind(f.name)
		var n int
		switch kind {
		case "":
			continue
		case hdrAAR:
			n, _, _ = parseAAR(f.value)
		default:
			if tags, err := parseTags(f.value); err == nil {
				n, _ = tagInstance(tags)
			}
		}
		highest = max(highest, n)
	}
	return highest
}

// describe is the public view of the sets.
func describe(sets []*arcSet) []Set {
	out := make([]Set, len(sets))
	for i, s := range sets {
		d, _ := s.sealTags.get("d")
		sel, _ := s.sealTags.get("s")
		cv, _ := s.sealTags.get("cv")
		out[i] = Set{Instance: s.instance, AuthResults: s.authResults, Domain: d, Selector: sel, CV: strings.ToLower(cv)}
	}
	return out
}
