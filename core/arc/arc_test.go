package arc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"time"

	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	"github.com/miekg/dns"
)

// sealers of the tests: the first forwarder and a list server behind it.
type testSealers struct {
	w         *world
	fwd, list Sealer
	ed        Sealer
}

func newSealers(t testing.TB) testSealers {
	t.Helper()
	k1, k2, ked := loadKey(t, "rsa2048.pem"), loadKey(t, "rsa2048b.pem"), loadKey(t, "ed25519.pem")
	w := newWorld(t, map[string]string{
		"s1._domainkey.fwd.test":   k1.record,
		"s2._domainkey.lists.test": k2.record,
		"ed._domainkey.ed.test":    ked.record,
	})
	return testSealers{
		w:    w,
		fwd:  Sealer{Domain: "fwd.test", Selector: "s1", Key: k1.signer, Now: fixedTime},
		list: Sealer{Domain: "lists.test", Selector: "s2", Key: k2.signer, Now: fixedTime},
		ed:   Sealer{Domain: "ed.test", Selector: "ed", Key: ked.signer, Now: fixedTime, ed25519: true},
	}
}

// verify runs Verify and fails the test on an unexpected error.
func (s testSealers) verify(t testing.TB, msg []byte) Result {
	t.Helper()
	res, err := Verify(context.Background(), msg, s.w.res.TXT)
	if (err != nil) != (res.Status == TempError) {
		t.Fatalf("Verify: status %s with error %v", res.Status, err)
	}
	return res
}

// seal verifies msg, seals it with sealer and returns the sealed message.
func (s testSealers) seal(t testing.TB, sealer Sealer, msg []byte, ar string) []byte {
	t.Helper()
	chain := s.verify(t, msg)
	set, err := sealer.Seal(msg, chain.Status, ar)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return append(set, msg...)
}

func TestSealVerifyChain(t *testing.T) {
	s := newSealers(t)
	msg := []byte(testMessage)
	if res := s.verify(t, msg); res.Status != None || res.ResInfo() != "arc=none" {
		t.Fatalf("unsealed: %+v %q", res, res.ResInfo())
	}
	one := s.seal(t, s.fwd, msg, "mx.fwd.test; spf=pass smtp.mailfrom=origin.test; dkim=none")
	res := s.verify(t, one)
	if res.Status != Pass || len(res.Sets) != 1 || res.Sets[0].CV != "none" {
		t.Fatalf("one set: %+v", res)
	}
	two := s.seal(t, s.list, one, "mx.lists.test; arc=pass")
	res = s.verify(t, two)
	want := []Set{
		{Instance: 1, AuthResults: "mx.fwd.test; spf=pass smtp.mailfrom=origin.test; dkim=none", Domain: "fwd.test", Selector: "s1", CV: "none"},
		{Instance: 2, AuthResults: "mx.lists.test; arc=pass", Domain: "lists.test", Selector: "s2", CV: "pass"},
	}
	if res.Status != Pass || fmt.Sprint(res.Sets) != fmt.Sprint(want) || res.OldestPass != 0 {
		t.Fatalf("two sets: %+v", res)
	}
	if got := res.ResInfo(); got != "arc=pass (i=2 d=lists.test)" {
		t.Errorf("ResInfo = %q", got)
	}
	// The new sets go on top, in the order ARC-Seal, AMS, AAR.
	for i, prefix := range []string{"ARC-Seal: i=2;", "ARC-Message-Signature: i=2;", "ARC-Authentication-Results: i=2;"} {
		if line := strings.Split(string(two), "\r\n"); !strings.HasPrefix(fieldAt(two, i), prefix) {
			t.Errorf("field %d = %q, want prefix %q (%d lines)", i, fieldAt(two, i), prefix, len(line))
		}
	}
}

// TestSealFoldsAAR: long results are folded at spaces and come back from
// Verify as they were given.
func TestSealFoldsAAR(t *testing.T) {
	s := newSealers(t)
	ar := "mx.fwd.test; spf=pass smtp.mailfrom=origin.test; dkim=pass header.d=origin.test header.s=s1; dmarc=pass header.from=origin.test; arc=none"
	msg := s.seal(t, s.fwd, []byte(testMessage), ar)
	for _, line := range strings.Split(string(msg), "\r\n") {
		if len(line) > 78 {
			t.Errorf("line of %d octets: %q", len(line), line)
		}
	}
	aar := fieldAt(msg, 2)
	if strings.Count(aar, "\r\n") < 2 {
		t.Errorf("AAR not folded: %q", aar)
	}
	res := s.verify(t, msg)
	if res.Status != Pass || res.Sets[0].AuthResults != ar {
		t.Fatalf("%s %q", res.Status, res.Sets[0].AuthResults)
	}
}

func TestSealVerifyEd25519(t *testing.T) {
	s := newSealers(t)
	one := s.seal(t, s.ed, []byte(testMessage), "mx.ed.test; spf=pass")
	two := s.seal(t, s.fwd, one, "mx.fwd.test; arc=pass")
	if res := s.verify(t, two); res.Status != Pass || len(res.Sets) != 2 {
		t.Fatalf("%+v", res)
	}
	if !strings.Contains(string(one), "a=ed25519-sha256") {
		t.Errorf("no ed25519 in %s", one)
	}
}

// fieldAt returns the i-th header field of msg, unfolded lines included.
func fieldAt(msg []byte, i int) string {
	fields, _ := splitMessage(msg)
	return string(fields[i].raw)
}

// TestOldestPass: a hop that changes the body after the first seal and
// seals again keeps the chain passing, with oldest-pass naming it.
func TestOldestPass(t *testing.T) {
	s := newSealers(t)
	one := s.seal(t, s.fwd, []byte(testMessage), "mx.fwd.test; spf=pass")
	changed := []byte(strings.Replace(string(one), "Hello,", "Hello from the list,", 1))
	two := s.seal(t, s.list, changed, "mx.lists.test; arc=pass")
	// The list sealed a chain that its own verification saw failing.
	if res := s.verify(t, two); res.Status != Fail {
		t.Fatalf("after a change before the seal: %+v", res)
	}
	// Sealing the change with a pass (the list trusts hop 1) keeps it passing.
	chain := s.verify(t, one)
	set, err := s.list.Seal(changed, chain.Status, "mx.lists.test; arc=pass")
	if err != nil {
		t.Fatal(err)
	}
	res := s.verify(t, append(set, changed...))
	if res.Status != Pass || res.OldestPass != 2 {
		t.Fatalf("%+v", res)
	}
	if got := res.ResInfo(); got != "arc=pass (i=2 d=lists.test) header.oldest-pass=2" {
		t.Errorf("ResInfo = %q", got)
	}
}

func TestVerifyFails(t *testing.T) {
	s := newSealers(t)
	one := string(s.seal(t, s.fwd, []byte(testMessage), "mx.fwd.test; spf=pass"))
	two := string(s.seal(t, s.list, []byte(one), "mx.lists.test; arc=pass"))
	sealB := between(two, "ARC-Seal: i=2", "b=")
	cases := []struct {
		name, msg, reason string
	}{
		{"body changed", strings.Replace(two, "Hello,", "Hullo,", 1), "body hash does not match"},
		{"subject changed", strings.Replace(two, "Subject: ARC  test", "Subject: ARC test!", 1), "ARC-Message-Signature i=2 does not verify"},
		{"seal b= broken", strings.Replace(two, sealB+"b=", sealB+"b=AAAA", 1), "ARC-Seal i=2 does not verify"},
		{"older AAR changed", strings.Replace(two, "spf=pass", "spf=fail", 1), "ARC-Seal i=2 does not verify"},
		{"instances swapped", swapInstances(two), `ARC-Seal i=2 has cv="none"`},
		{"AARs swapped", swapAAR(two), "ARC-Seal i=2 does not verify"},
		{"set removed", dropFields(two, "ARC-Authentication-Results: i=1"), "ARC set i=1 is incomplete"},
		{"gap", renumber(one, "i=1", "i=2"), "no ARC set i=1 below i=2"},
		{"duplicate", fieldAt([]byte(two), 2) + two, "two ARC-Authentication-Results fields with i=2"},
		{"instance 0", renumber(one, "i=1", "i=0"), "instance 0 out of 1..50"},
		{"instance 51", renumber(one, "i=1", "i=51"), "instance 51 out of 1..50"},
		{"cv pass on i=1", strings.Replace(one, "cv=none", "cv=pass", 1), `ARC-Seal i=1 has cv="pass", want none`},
		{"cv none on i=2", strings.Replace(two, "cv=pass", "cv=none", 1), `ARC-Seal i=2 has cv="none", want pass`},
		{"cv fail", strings.Replace(two, "cv=pass", "cv=fail", 1), "ARC-Seal i=2 says cv=fail"},
		{"seal with h=", strings.Replace(two, "cv=pass;", "cv=pass; h=from;", 1), "ARC-Seal i=2: has an h= tag"},
		{"AMS signs ARC-Seal", strings.Replace(two, "h=from:", "h=arc-seal:from:", 1), "h= names ARC-Seal"},
		{"bad tag list", strings.Replace(two, "cv=pass;", "cv=pass; cv=pass;", 1), `tag "cv" appears twice`},
		{"unknown key", strings.Replace(two, "s=s2;", "s=nope;", 2), "no such domain"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := s.verify(t, []byte(c.msg))
			if res.Status != Fail || !strings.Contains(res.Reason, c.reason) {
				t.Fatalf("got %s %q, want fail with %q", res.Status, res.Reason, c.reason)
			}
		})
	}
}

// between returns the text of s from start up to (not including) the next end.
func between(s, start, end string) string {
	i := strings.Index(s, start)
	j := strings.Index(s[i:], end)
	return s[i : i+j]
}

// renumber replaces old by new in every ARC field's instance tag.
func renumber(msg, old, new string) string {
	for _, h := range []string{"ARC-Seal: ", "ARC-Message-Signature: ", "ARC-Authentication-Results: "} {
		msg = strings.Replace(msg, h+old+";", h+new+";", 1)
	}
	return msg
}

// swapInstances exchanges i=1 and i=2 in every ARC field.
func swapInstances(msg string) string {
	msg = renumber(msg, "i=2", "i=X")
	msg = renumber(msg, "i=1", "i=2")
	return renumber(msg, "i=X", "i=1")
}

// swapAAR exchanges the instance numbers of the two ARC-Authentication-Results.
func swapAAR(msg string) string {
	const h = "ARC-Authentication-Results: "
	msg = strings.Replace(msg, h+"i=2;", h+"i=X;", 1)
	msg = strings.Replace(msg, h+"i=1;", h+"i=2;", 1)
	return strings.Replace(msg, h+"i=X;", h+"i=1;", 1)
}

// dropFields removes the field starting with prefix.
func dropFields(msg, prefix string) string {
	i := strings.Index(msg, prefix)
	f := fieldAt([]byte(msg[i:]), 0)
	return msg[:i] + msg[i+len(f):]
}

func TestTooManySets(t *testing.T) {
	s := newSealers(t)
	msg := []byte(testMessage)
	for i := 1; i <= MaxSets; i++ {
		msg = s.seal(t, s.fwd, msg, "mx.fwd.test; arc=pass")
	}
	res := s.verify(t, msg)
	if res.Status != Pass || len(res.Sets) != MaxSets {
		t.Fatalf("50 sets: %s %q", res.Status, res.Reason)
	}
	if _, err := s.fwd.Seal(msg, res.Status, "mx.fwd.test; arc=pass"); err == nil || !strings.Contains(err.Error(), "already has 50 sets") {
		t.Fatalf("51st seal: %v", err)
	}
}

func TestVerifyTempError(t *testing.T) {
	s := newSealers(t)
	two := s.seal(t, s.list, s.seal(t, s.fwd, []byte(testMessage), "a; spf=pass"), "b; arc=pass")
	s.w.dns.SetFault("s1._domainkey.fwd.test", dns.TypeTXT, resolvertest.ServFail)
	// A resolver without a cache, so the fault is seen.
	r, err := resolver.New(resolver.Options{Servers: []string{s.w.dns.Addr()}, Timeout: 500 * time.Millisecond, Attempts: 1, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	s.w.res = r
	res, err := Verify(context.Background(), two, s.w.res.TXT)
	if res.Status != TempError || !errors.Is(err, errTemporary) || !strings.Contains(res.Reason, "s1._domainkey.fwd.test") {
		t.Fatalf("got %s %q, %v", res.Status, res.Reason, err)
	}
	// A permanent failure beats a temporary one: the answer is known.
	broken := []byte(strings.Replace(string(two), "Hello,", "Hullo,", 1))
	if res := s.verify(t, broken); res.Status != Fail {
		t.Fatalf("broken body with a key down: %s %q", res.Status, res.Reason)
	}
	// A cancelled context is temporary too, never a pass or a fail.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.w.dns.SetFault("s1._domainkey.fwd.test", dns.TypeTXT, resolvertest.NoFault)
	if res, err := Verify(ctx, two, s.w.res.TXT); res.Status != TempError || err == nil {
		t.Fatalf("cancelled: %s %v", res.Status, err)
	}
}

// TestSealFailedChain: a broken chain gets cv=fail and a seal over our set
// alone; what comes after it is refused (RFC 8617 §5.1).
func TestSealFailedChain(t *testing.T) {
	s := newSealers(t)
	one := s.seal(t, s.fwd, []byte(testMessage), "mx.fwd.test; spf=pass")
	broken := []byte(strings.Replace(string(one), "Hello,", "Hullo,", 1))
	chain := s.verify(t, broken)
	if chain.Status != Fail {
		t.Fatalf("%+v", chain)
	}
	set, err := s.list.Seal(broken, chain.Status, "mx.lists.test; arc=fail")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(set), "cv=fail") || !strings.HasPrefix(string(set), "ARC-Seal: i=2;") {
		t.Fatalf("set: %s", set)
	}
	sealed := append(set, broken...)
	// Our seal verifies over our own set alone.
	fields, body := splitMessage(sealed)
	sets, err := collectSets(fields)
	if err != nil {
		t.Fatal(err)
	}
	v := &verifier{fields: fields, body: body, keys: keyCache{lookup: s.w.res.TXT}}
	if err := v.verifySeal(context.Background(), []*arcSet{sets[1]}); err != nil {
		t.Errorf("cv=fail seal over its own set: %v", err)
	}
	after := s.verify(t, sealed)
	if after.Status != Fail || !strings.Contains(after.Reason, "cv=fail") {
		t.Fatalf("after: %+v", after)
	}
	if _, err := s.fwd.Seal(sealed, after.Status, "mx.fwd.test; arc=fail"); !errors.Is(err, ErrChainEnded) {
		t.Fatalf("seal after cv=fail: %v", err)
	}
}

func TestSealRefuses(t *testing.T) {
	s := newSealers(t)
	plain := []byte(testMessage)
	sealed := s.seal(t, s.fwd, plain, "mx.fwd.test; spf=pass")
	cases := []struct {
		name   string
		sealer Sealer
		msg    []byte
		cv     Status
		ar     string
		want   string
	}{
		{"no key", Sealer{Domain: "a", Selector: "b"}, plain, None, "x; spf=pass", "needs Domain, Selector and Key"},
		{"empty results", s.fwd, plain, None, " ", "one non-empty line"},
		{"CRLF in results", s.fwd, plain, None, "x; spf=pass\r\nBcc: x", "one non-empty line"},
		{"ARC in h=", Sealer{Domain: "a", Selector: "b", Key: s.fwd.Key, Headers: []string{"From", "ARC-Seal"}}, plain, None, "x; a=b", "must not sign ARC-Seal"},
		{"no From in h=", Sealer{Domain: "a", Selector: "b", Key: s.fwd.Key, Headers: []string{"Subject"}}, plain, None, "x; a=b", "must sign From"},
		{"Ed25519 key", Sealer{Domain: "a", Selector: "b", Key: s.ed.Key}, plain, None, "x; a=b", "need an RSA key"},
		{"temperror", s.fwd, plain, TempError, "x; a=b", `cannot seal with cv="temperror"`},
		{"no cv", s.fwd, plain, "", "x; a=b", `cannot seal with cv=""`},
		{"pass without sets", s.fwd, plain, Pass, "x; a=b", "cv=pass for a message without ARC sets"},
		{"pass for a broken chain", s.fwd, []byte(dropFields(string(sealed), "ARC-Seal")), Pass, "x; a=b", "cv=pass for a broken chain"},
		{"none with sets", s.fwd, sealed, None, "x; a=b", "cv=none for a message with ARC sets"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.sealer.Seal(c.msg, c.cv, c.ar)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

func TestFromAuthResults(t *testing.T) {
	msg := []byte("Authentication-Results: MX.example.test 1;\r\n spf=pass smtp.mailfrom=a.test;\r\n\tarc=pass (i=1 d=f.test)\r\n" +
		"Authentication-Results: other.test; arc=fail\r\n" +
		"Authentication-Results: mx.example.test; arc=none\r\n" +
		"From: a@a.test\r\n\r\nbody\r\n")
	payload, cv, ok := FromAuthResults(msg, "mx.example.test")
	if !ok || cv != Pass || payload != "MX.example.test 1; spf=pass smtp.mailfrom=a.test; arc=pass (i=1 d=f.test)" {
		t.Fatalf("%q %q %v", payload, cv, ok)
	}
	// Only the topmost field counts: one further down is not ours,
	// whatever its id says (the review's forged field after a reload).
	if _, _, ok := FromAuthResults(msg, "other.test"); ok {
		t.Fatal("found other.test's field below the topmost")
	}
	if _, _, ok := FromAuthResults(msg, "nobody.test"); ok {
		t.Fatal("found a field for nobody.test")
	}
	if _, cv, ok := FromAuthResults([]byte("Authentication-Results: x; spf=pass\r\n\r\n"), "x"); !ok || cv != "" {
		t.Fatalf("no arc=: %q %v", cv, ok)
	}
}

// TestSealFromQueue: what the gateway does when a message leaves the
// queue: the cv and the AAR come from its own Authentication-Results.
func TestSealFromQueue(t *testing.T) {
	s := newSealers(t)
	one := s.seal(t, s.fwd, []byte(testMessage), "mx.fwd.test; spf=pass")
	res := s.verify(t, one)
	received := append([]byte("Authentication-Results: mx.lists.test; spf=pass smtp.mailfrom=origin.test; "+res.ResInfo()+"\r\n"), one...)
	rewritten := []byte(strings.Replace(string(received), "Subject: ARC  test", "Subject: [list] ARC test", 1))
	payload, cv, ok := FromAuthResults(rewritten, "mx.lists.test")
	if !ok || cv != Pass {
		t.Fatalf("%q %q %v", payload, cv, ok)
	}
	set, err := s.list.Seal(rewritten, cv, payload)
	if err != nil {
		t.Fatal(err)
	}
	res = s.verify(t, append(set, rewritten...))
	if res.Status != Pass || res.OldestPass != 2 || res.Sets[1].AuthResults != "mx.lists.test; spf=pass smtp.mailfrom=origin.test; arc=pass (i=1 d=fwd.test)" {
		t.Fatalf("%+v", res)
	}
}

// TestVerifyBareLF: a chain sealed over CRLF still verifies when the
// message is stored with bare LFs, as canonicalization reads both.
func TestVerifyBareLF(t *testing.T) {
	s := newSealers(t)
	two := s.seal(t, s.list, s.seal(t, s.fwd, []byte(testMessage), "a.test; spf=pass"), "b.test; arc=pass")
	lf := strings.ReplaceAll(string(two), "\r\n", "\n")
	if res := s.verify(t, []byte(lf)); res.Status != Pass {
		t.Fatalf("%s %q", res.Status, res.Reason)
	}
}
