package pickup

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
)

// FuzzParseEnvelope: any file a local user drops is refused or read,
// never a crash; what is read encodes back to an envelope that parses to
// the same thing.
func FuzzParseEnvelope(f *testing.F) {
	head, _ := testEnvelope().Encode()
	f.Add(append(head, "Subject: x\n\nhi\n"...))
	f.Add([]byte(magic + "\nuid 0\nsender <>\nrcpt <a@b.test>\n\n"))
	f.Add([]byte(magic + "\nuid 1\nsender <\"x y\"@[127.0.0.1]>\nsmtputf8\nrcpt <ü@ü.test> NOTIFY=NEVER\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		env, n, err := ParseEnvelope(bufio.NewReader(bytes.NewReader(in)))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		if n > int64(len(in)) {
			t.Fatalf("took %d bytes of %d", n, len(in))
		}
		again, err := env.Encode()
		if err != nil {
			t.Fatalf("Encode of a parsed envelope: %v", err)
		}
		env2, _, err := ParseEnvelope(bufio.NewReader(bytes.NewReader(again)))
		if err != nil {
			t.Fatalf("re-parse: %v\n%s", err, again)
		}
		if again2, _ := env2.Encode(); !bytes.Equal(again, again2) {
			t.Fatalf("not stable:\n%s\n%s", again, again2)
		}
	})
}
