package arc

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Verify validates the ARC chain of msg (RFC 8617 §5.2), a whole message
// with CRLF (or LF) line ends, fetching keys with lookup.
//
// The status is None without ARC fields; Fail with a Reason when the
// structure is wrong (instances, duplicates, more than 50 sets, a cv= other
// than none on i=1 or pass above it), a seal already says cv=fail, the
// newest ARC-Message-Signature does not verify over the message, or any
// ARC-Seal does not verify; Pass otherwise. When a key needed for the answer
// cannot be fetched for now and nothing else failed, the status is
// TempError and the error, which wraps the lookup's, is returned too: the
// only case with a non-nil error.
func Verify(ctx context.Context, msg []byte, lookup LookupTXT) (Result, error) {
	fields, body := splitMessage(msg)
	sets, err := collectSets(fields)
	if err != nil {
		return Result{Status: Fail, Reason: err.Error()}, nil
	}
	if len(sets) == 0 {
		return Result{Status: None}, nil
	}
	res := Result{Status: Fail, Sets: describe(sets)}
	if err := checkCV(res.Sets); err != nil {
		res.Reason = err.Error()
		return res, nil
	}
	v := &verifier{fields: fields, body: body, keys: keyCache{lookup: lookup}}
	// The newest AMS, then every seal from the newest down; the first
	// permanent failure decides, a temporary one only if none follows.
	var temp error
	n := len(sets)
	checks := make([]func() error, 0, n+1)
	checks = append(checks, func() error { return v.verifyAMS(ctx, sets[n-1]) })
	for i := n; i >= 1; i-- {
		checks = append(checks, func() error { return v.verifySeal(ctx, sets[:i]) })
	}
	for _, check := range checks {
		err := check()
		switch {
		case err == nil:
		case errors.Is(err, errTemporary):
			if temp == nil {
				temp = err
			}
		default:
			res.Reason = err.Error()
			return res, nil
		}
	}
	if temp != nil {
		res.Status, res.Reason = TempError, temp.Error()
		return res, fmt.Errorf("arc: %w", temp)
	}
	res.Status = Pass
	res.OldestPass = v.oldestPass(ctx, sets)
	return res, nil
}

// checkCV applies the cv= rules: none on i=1, pass above, never fail.
func checkCV(sets []Set) error {
	for i := len(sets) - 1; i >= 0; i-- {
		s := sets[i]
		want := "pass"
		if s.Instance == 1 {
			want = "none"
		}
		switch {
		case s.CV == "fail":
			return fmt.Errorf("ARC-Seal i=%d says cv=fail: the chain ended there", s.Instance)
		case s.CV != want:
			return fmt.Errorf("ARC-Seal i=%d has cv=%q, want %s", s.Instance, s.CV, want)
		}
	}
	return nil
}

// oldestPass checks the older ARC-Message-Signatures, newest first, and
// returns the lowest instance from which on all verify, or 0 when all do.
// A key that cannot be fetched ends the search: only what is proved counts.
func (v *verifier) oldestPass(ctx context.Context, sets []*arcSet) int {
	for i := len(sets) - 1; i >= 1; i-- {
		if v.verifyAMS(ctx, sets[i-1]) != nil {
			return i + 1
		}
	}
	return 0
}

// verifier holds one message under verification.
type verifier struct {
	fields []field
	body   []byte
	keys   keyCache
	canon  map[string][]byte // canonical bodies by c= body algorithm, made once
}

// verifyAMS checks an ARC-Message-Signature like a DKIM signature (RFC
// 8617 §4.1.2): body hash, the fields of h= bottom-up, then itself with b=
// blanked.
func (v *verifier) verifyAMS(ctx context.Context, s *arcSet) error {
	t := s.amsTags
	where := fmt.Sprintf("%s i=%d", hdrAMS, s.instance)
	if err := t.require("i", "a", "b", "bh", "d", "h", "s"); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	hc, bc, err := canonOf(t)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if err := v.checkBodyHash(t, bc); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	h, _ := t.get("h")
	names := splitH(h)
	for _, n := range names {
		if strings.EqualFold(n, hdrSeal) {
			return fmt.Errorf("%s: h= names ARC-Seal", where)
		}
	}
	signed := headerHashInput(v.fields, names, hc) + blankedSig(s.ams, t, hc)
	return v.checkSig(ctx, t, signed, where)
}

// verifySeal checks the ARC-Seal of the last of sets over every set up to
// it (RFC 8617 §5.1.1), with relaxed canonicalization.
func (v *verifier) verifySeal(ctx context.Context, sets []*arcSet) error {
	s := sets[len(sets)-1]
	t := s.sealTags
	where := fmt.Sprintf("%s i=%d", hdrSeal, s.instance)
	if err := t.require("i", "a", "b", "cv", "d", "s"); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if _, ok := t.get("h"); ok {
		return fmt.Errorf("%s: has an h= tag", where)
	}
	return v.checkSig(ctx, t, sealInput(sets), where)
}

// sealInput is what an ARC-Seal signs: AAR, AMS, AS of each set in
// instance order, the last seal with b= blanked and no final CRLF.
func sealInput(sets []*arcSet) string {
	var b strings.Builder
	for i, s := range sets {
		b.WriteString(relaxedHeader(s.aar.name, s.aar.value))
		b.WriteString(relaxedHeader(s.ams.name, s.ams.value))
		if i < len(sets)-1 {
			b.WriteString(relaxedHeader(s.seal.name, s.seal.value))
		}
	}
	last := sets[len(sets)-1]
	b.WriteString(blankedSig(last.seal, last.sealTags, "relaxed"))
	return b.String()
}

// checkSig verifies the b= of a signature over the signed text.
func (v *verifier) checkSig(ctx context.Context, t tagList, signed, where string) error {
	a, _ := t.get("a")
	a = strings.ToLower(a)
	if a != AlgRSASHA256 && a != AlgEd25519SHA256 {
		return fmt.Errorf("%s: unsupported a=%s", where, a)
	}
	d, _ := t.get("d")
	sel, _ := t.get("s")
	if d == "" || sel == "" {
		return fmt.Errorf("%s: empty d= or s=", where)
	}
	b, _ := t.get("b")
	sig, err := base64.StdEncoding.DecodeString(stripSpace(b))
	if err != nil {
		return fmt.Errorf("%s: b= is not base64", where)
	}
	pub, err := v.keys.publicKey(ctx, a, sel, d)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if err := verifySig(pub, digestOf(signed), sig); err != nil {
		return fmt.Errorf("%s does not verify (d=%s s=%s)", where, d, sel)
	}
	return nil
}

// checkBodyHash compares bh= with the hash of the body canonicalized by bc,
// cut to l= octets if the signature has one.
func (v *verifier) checkBodyHash(t tagList, bc string) error {
	body, ok := v.canon[bc]
	if !ok {
		body = canonBody(v.body, bc)
		if v.canon == nil {
			v.canon = make(map[string][]byte)
		}
		v.canon[bc] = body
	}
	if l, ok := t.get("l"); ok {
		n, err := strconv.ParseInt(l, 10, 64)
		if err != nil || n < 0 || n > int64(len(body)) {
			return fmt.Errorf("bad l=%s", l)
		}
		body = body[:n]
	}
	bh, _ := t.get("bh")
	want, err := base64.StdEncoding.DecodeString(stripSpace(bh))
	if err != nil {
		return errors.New("bh= is not base64")
	}
	if !bytes.Equal(want, digestOf(string(body))) {
		return errors.New("body hash does not match: the body changed")
	}
	return nil
}

// canonOf reads c= (default simple/simple, RFC 6376 §3.5).
func canonOf(t tagList) (header, body string, err error) {
	c, ok := t.get("c")
	if !ok {
		return "simple", "simple", nil
	}
	header, body, _ = strings.Cut(strings.ToLower(c), "/")
	if body == "" {
		body = "simple"
	}
	for _, x := range []string{header, body} {
		if x != "simple" && x != "relaxed" {
			return "", "", fmt.Errorf("unknown canonicalization c=%s", c)
		}
	}
	return header, body, nil
}

func canonBody(body []byte, c string) []byte {
	if c == "relaxed" {
		return relaxedBody(body)
	}
	return simpleBody(body)
}

func canonField(f *field, value, c string) string {
	if c == "relaxed" {
		return relaxedHeader(f.name, value)
	}
	raw := f.raw
	if value != f.value {
		raw = []byte(string(f.raw[:len(f.raw)-len(f.value)]) + value)
	}
	return simpleHeader(raw)
}

// splitH splits an h= value into field names.
func splitH(h string) []string {
	var names []string
	for _, n := range strings.Split(h, ":") {
		if n = strings.Trim(n, fws); n != "" {
			names = append(names, n)
		}
	}
	return names
}

// headerHashInput canonicalizes the fields named, each name taking the
// lowest unused field of that name (RFC 6376 §5.4.2); a name with none left
// adds nothing. Fields are indexed by name first, so a long h= over many
// fields costs no more than reading both.
func headerHashInput(fields []field, names []string, c string) string {
	byName := make(map[string][]int) // lower-case name → indices, last first
	for i := len(fields) - 1; i >= 0; i-- {
		n := strings.ToLower(fields[i].name)
		byName[n] = append(byName[n], i)
	}
	var b strings.Builder
	for _, n := range names {
		n = strings.ToLower(n)
		left := byName[n]
		if len(left) == 0 {
			continue
		}
		b.WriteString(canonField(&fields[left[0]], fields[left[0]].value, c))
		byName[n] = left[1:]
	}
	return b.String()
}

// blankedSig is the signature field itself with the b= value removed and
// no final CRLF, as it enters its own hash.
func blankedSig(f *field, t tagList, c string) string {
	value := f.value
	if bt, ok := t.find("b"); ok {
		value = value[:bt.start] + value[bt.end:]
	}
	return strings.TrimSuffix(canonField(f, value, c), "\r\n")
}
