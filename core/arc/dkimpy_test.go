package arc

import (
	"bytes"
	"encoding/json"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The independent implementation: Debian's dkimpy (python3-dkim, with
// python3-authres for arc_sign and python3-nacl for Ed25519), run by the
// system Python through testdata/dkimpy_arc.py with DNS from a JSON file.
const systemPython = "/usr/bin/python3"

func needDkimpy(t *testing.T) {
	t.Helper()
	out, err := exec.Command(systemPython, "-c", "import dkim, authres, nacl").CombinedOutput()
	if err != nil {
		t.Skipf("skipping: %s cannot import dkim, authres and nacl (install python3-dkim python3-authres python3-nacl): %v %s",
			systemPython, err, bytes.TrimSpace(out))
	}
}

func dkimpy(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	script, _ := filepath.Abs(filepath.Join("testdata", "dkimpy_arc.py"))
	cmd := exec.Command(systemPython, append([]string{script}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimpy %s: %v\n%s", args[0], err, stderr.String())
	}
	return out
}

// dkimpySeal has dkimpy seal msg for d=domain s=selector with the key in
// file, after an Authentication-Results of srvID carrying results (its
// arc= result is dkimpy's cv=).
func dkimpySeal(t *testing.T, w *world, msg []byte, selector, domain, keyFile, srvID, results string) []byte {
	t.Helper()
	in := append([]byte("Authentication-Results: "+srvID+"; "+results+"\r\n"), msg...)
	return dkimpy(t, in, "sign", w.keysJSON(t), selector, domain, keyFile, srvID)
}

// dkimpyResult is dkimpy's verdict on one message.
type dkimpyResult struct{ CV, Reason string }

// dkimpyVerify returns dkimpy's verdicts on msgs, asked in one run.
func dkimpyVerify(t *testing.T, w *world, msgs map[string]string) map[string]dkimpyResult {
	t.Helper()
	names := slices.Sorted(maps.Keys(msgs))
	list := make([]string, len(names))
	for i, n := range names {
		list[i] = msgs[n]
	}
	in, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	var out []dkimpyResult
	if err := json.Unmarshal(dkimpy(t, in, "verify", w.keysJSON(t)), &out); err != nil || len(out) != len(names) {
		t.Fatalf("dkimpy verify: %v (%d results)", err, len(out))
	}
	res := make(map[string]dkimpyResult, len(names))
	for i, n := range names {
		res[n] = out[i]
	}
	return res
}

// oddMessage has what canonicalization must get right: repeated and
// folded fields, tabs and runs of spaces, whitespace at line ends, empty
// lines at the end of the body and a last line without CRLF.
const oddMessage = "Received: from a.test by b.test; Sun, 6 Dec 2026 10:00:00 +0000\r\n" +
	"Received: from c.test\r\n\tby d.test; Sun, 6 Dec 2026 09:00:00 +0000\r\n" +
	"From:   \"Bob\"\t<bob@origin.test>  \r\n" +
	"To: x@lists.test,\r\n  y@lists.test\r\n" +
	"Subject: =?utf-8?q?caf=C3=A9?=\t  folded\r\n   subject \r\n" +
	"Date: Sun, 06 Dec 2026 10:00:00 +0000\r\n" +
	"Message-ID: <2@origin.test>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain;\r\n\tcharset=utf-8\r\n" +
	"\r\n" +
	"body  \t with\ttabs \r\n\r\n  \r\nlast line without newline\r\n\r\n\r\nend"

var dkimpyMessages = map[string]string{"plain": testMessage, "odd": oddMessage}

// TestDkimpySealsWeVerify: chains of one and two sets made by dkimpy pass
// our Verify, with the AAR contents dkimpy wrote.
func TestDkimpySealsWeVerify(t *testing.T) {
	needDkimpy(t)
	t.Parallel() // each runs dkimpy a few times, most of a second each
	s := newSealers(t)
	k1, k2 := loadKey(t, "rsa2048.pem"), loadKey(t, "rsa2048b.pem")
	twos := make(map[string]string)
	for name, msg := range dkimpyMessages {
		one := dkimpySeal(t, s.w, []byte(msg), "s1", "fwd.test", k1.file, "mx.fwd.test", "spf=pass smtp.mailfrom=origin.test")
		res := s.verify(t, one)
		if res.Status != Pass || len(res.Sets) != 1 || res.Sets[0].AuthResults != "mx.fwd.test; spf=pass smtp.mailfrom=origin.test" {
			t.Fatalf("%s, one set: %+v\n%s", name, res, one)
		}
		two := dkimpySeal(t, s.w, one, "s2", "lists.test", k2.file, "mx.lists.test", "arc=pass")
		res = s.verify(t, two)
		if res.Status != Pass || len(res.Sets) != 2 || res.Sets[1].CV != "pass" || res.Sets[1].Domain != "lists.test" {
			t.Fatalf("%s, two sets: %+v\n%s", name, res, two)
		}
		twos[name] = string(two)
	}
	for name, got := range dkimpyVerify(t, s.w, twos) {
		if got.CV != "pass" {
			t.Errorf("%s: dkimpy on its own chain: %+v", name, got)
		}
	}
}

// TestWeSealDkimpyVerifies: our sets pass dkimpy's arc_verify, alone, on
// top of a dkimpy set, and under one. (dkimpy accepts only rsa-sha256 in
// ARC sets, which is why Seal refuses Ed25519 keys.)
func TestWeSealDkimpyVerifies(t *testing.T) {
	needDkimpy(t)
	t.Parallel() // each runs dkimpy a few times, most of a second each
	s := newSealers(t)
	k1 := loadKey(t, "rsa2048.pem")
	msgs := make(map[string]string)
	for name, msg := range dkimpyMessages {
		ours := s.seal(t, s.list, []byte(msg), "mx.lists.test; spf=pass smtp.mailfrom=origin.test;"+
			" dkim=pass header.d=origin.test header.s=s1; dmarc=pass header.from=origin.test") // a folded AAR
		theirsFirst := dkimpySeal(t, s.w, []byte(msg), "s1", "fwd.test", k1.file, "mx.fwd.test", "spf=pass")
		msgs[name+", ours alone"] = string(ours)
		msgs[name+", ours on dkimpy's"] = string(s.seal(t, s.list, theirsFirst, "mx.lists.test; arc=pass"))
		msgs[name+", dkimpy's on ours"] = string(dkimpySeal(t, s.w, ours, "s1", "fwd.test", k1.file, "mx.fwd.test", "arc=pass"))
	}
	theirs := dkimpyVerify(t, s.w, msgs)
	for name, msg := range msgs {
		if got := theirs[name]; got.CV != "pass" {
			t.Errorf("%s: dkimpy says %+v\n%s", name, got, msg)
		}
		if res := s.verify(t, []byte(msg)); res.Status != Pass {
			t.Errorf("%s: we say %s (%s)", name, res.Status, res.Reason)
		}
	}
}

// TestBrokenChainsFailInBoth: a broken seal, a changed body and swapped
// instances fail in dkimpy and in our Verify, whoever sealed.
func TestBrokenChainsFailInBoth(t *testing.T) {
	needDkimpy(t)
	t.Parallel() // each runs dkimpy a few times, most of a second each
	s := newSealers(t)
	k2 := loadKey(t, "rsa2048b.pem")
	one := s.seal(t, s.fwd, []byte(testMessage), "mx.fwd.test; spf=pass")
	chains := map[string]string{
		"ours":   string(s.seal(t, s.list, one, "mx.lists.test; arc=pass")),
		"dkimpy": string(dkimpySeal(t, s.w, one, "s2", "lists.test", k2.file, "mx.lists.test", "arc=pass")),
	}
	broken := make(map[string]string)
	for who, two := range chains {
		broken[who+", broken seal"] = breakSeal(two)
		broken[who+", changed body"] = strings.Replace(two, "Hello,", "Hullo,", 1)
		broken[who+", swapped instances"] = swapInstances(two)
		broken[who+", swapped AARs"] = swapAAR(two)
	}
	theirs := dkimpyVerify(t, s.w, broken)
	for name, msg := range broken {
		if got := theirs[name]; got.CV != "fail" {
			t.Errorf("%s: dkimpy says %+v", name, got)
		}
		if res := s.verify(t, []byte(msg)); res.Status != Fail {
			t.Errorf("%s: we say %s", name, res.Status)
		}
	}
}

// breakSeal changes one character of the newest ARC-Seal's signature.
// (Prepending zero bytes would not do: dkimpy reads the signature as an
// integer, to which leading zeros make no difference.)
func breakSeal(msg string) string {
	i := strings.Index(msg, "ARC-Seal: i=2")
	i += strings.Index(msg[i:], " b=") + len(" b=")
	c := byte('A')
	if msg[i] == 'A' {
		c = 'B'
	}
	return msg[:i] + string(c) + msg[i+1:]
}
