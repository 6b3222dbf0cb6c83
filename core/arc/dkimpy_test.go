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

// TestDkimpySealsWeVerify: chains of one and two sets made by dkimpy pass
// our Verify, with the AAR contents dkimpy wrote.
func TestDkimpySealsWeVerify(t *testing.T) {
	needDkimpy(t)
	s := newSealers(t)
	k1, k2 := loadKey(t, "rsa2048.pem"), loadKey(t, "rsa2048b.pem")
	one := dkimpySeal(t, s.w, []byte(testMessage), "s1", "fwd.test", k1.file, "mx.fwd.test", "spf=pass smtp.mailfrom=origin.test")
	res := s.verify(t, one)
	if res.Status != Pass || len(res.Sets) != 1 || res.Sets[0].AuthResults != "mx.fwd.test; spf=pass smtp.mailfrom=origin.test" {
		t.Fatalf("one set: %+v\n%s", res, one)
	}
	two := dkimpySeal(t, s.w, one, "s2", "lists.test", k2.file, "mx.lists.test", "arc=pass")
	res = s.verify(t, two)
	if res.Status != Pass || len(res.Sets) != 2 || res.Sets[1].CV != "pass" || res.Sets[1].Domain != "lists.test" {
		t.Fatalf("two sets: %+v\n%s", res, two)
	}
	if got := dkimpyVerify(t, s.w, map[string]string{"two": string(two)})["two"]; got.CV != "pass" {
		t.Fatalf("dkimpy on its own chain: %+v", got)
	}
}

// TestWeSealDkimpyVerifies: our sets pass dkimpy's arc_verify, alone, on
// top of a dkimpy set, and under one. (dkimpy accepts only rsa-sha256 in
// ARC sets, which is why Seal refuses Ed25519 keys.)
func TestWeSealDkimpyVerifies(t *testing.T) {
	needDkimpy(t)
	s := newSealers(t)
	k1 := loadKey(t, "rsa2048.pem")
	ours := s.seal(t, s.list, []byte(testMessage), "mx.lists.test; spf=pass smtp.mailfrom=origin.test")
	theirsFirst := dkimpySeal(t, s.w, []byte(testMessage), "s1", "fwd.test", k1.file, "mx.fwd.test", "spf=pass")
	oursOnTop := s.seal(t, s.list, theirsFirst, "mx.lists.test; arc=pass")
	theirsOnTop := dkimpySeal(t, s.w, ours, "s1", "fwd.test", k1.file, "mx.fwd.test", "arc=pass")
	msgs := map[string]string{
		"ours alone": string(ours), "ours on dkimpy's": string(oursOnTop), "dkimpy's on ours": string(theirsOnTop),
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
