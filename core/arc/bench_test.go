package arc

import (
	"context"
	"strings"
	"testing"
)

// benchMessage is a message of about 4 KB, the size of ordinary mail.
func benchMessage() []byte {
	return []byte(testMessage + strings.Repeat("A line of text in the body of a message, not too long.\r\n", 70))
}

// memLookup answers from the world's records without a DNS round trip, as
// the resolver's cache does for a sealer seen before.
func memLookup(w *world) LookupTXT {
	return func(_ context.Context, name string) ([]string, error) {
		return []string{w.records[name]}, nil
	}
}

// BenchmarkSeal: one ARC set (AMS and AS, two RSA-2048 signatures) on a
// message with no chain.
func BenchmarkSeal(b *testing.B) {
	s := newSealers(b)
	msg := benchMessage()
	for _, c := range []struct {
		name   string
		sealer Sealer
	}{{"rsa2048", s.fwd}, {"ed25519", s.ed}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.sealer.Seal(msg, None, "mx.fwd.test; spf=pass"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerify: a chain of one set and of two sets, keys from memory.
func BenchmarkVerify(b *testing.B) {
	s := newSealers(b)
	lookup := memLookup(s.w)
	one := s.seal(b, s.fwd, benchMessage(), "mx.fwd.test; spf=pass")
	cases := []struct {
		name string
		msg  []byte
	}{
		{"rsa2048/1set", one},
		{"rsa2048/2sets", s.seal(b, s.list, one, "mx.lists.test; arc=pass")},
		{"ed25519/1set", s.seal(b, s.ed, benchMessage(), "mx.ed.test; spf=pass")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if res, _ := Verify(context.Background(), c.msg, lookup); res.Status != Pass {
					b.Fatal(res.Reason)
				}
			}
		})
	}
}
