package dane_test

import (
	"crypto/x509"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/dane"
	"github.com/mailgate/gateway/core/resolver"
)

// FuzzVerify feeds TLSA records as they come from the DNS (any parameters,
// any data) to Verify against a real chain: no panic, a known result type,
// and no success without a usable record.
func FuzzVerify(f *testing.F) {
	now := time.Now()
	root := makeCA(f, "Root", nil)
	inter := makeCA(f, "Intermediate", root)
	leaf := makeLeaf(f, inter, now.Add(-time.Hour), "mx.example.test")
	chain := []*x509.Certificate{leaf.cert, inter.cert}
	for _, r := range []resolver.TLSA{
		dane.Record(3, 1, 1, leaf.cert),
		dane.Record(3, 0, 2, leaf.cert),
		dane.Record(2, 1, 0, root.cert),
		dane.Record(2, 0, 0, inter.cert),
		dane.Record(2, 1, 2, inter.cert),
		{Usage: 2, Selector: 1, MatchingType: 0, Data: []byte{0x30, 0x03, 0x02, 0x01, 0x00}},
	} {
		f.Add(r.Usage, r.Selector, r.MatchingType, r.Data)
	}
	known := []string{"tlsa-invalid", "certificate-host-mismatch", "certificate-expired", "certificate-not-trusted", "validation-failure"}
	f.Fuzz(func(t *testing.T, usage, selector, mt uint8, data []byte) {
		rec := resolver.TLSA{Usage: usage, Selector: selector, MatchingType: mt, Data: data}
		err := dane.Verify(chain, []resolver.TLSA{rec}, []string{"mx.example.test"}, now)
		if err != nil && !slices.Contains(known, dane.FailureType(err)) {
			t.Fatalf("Verify(%s) = %v: result type %q", rec, err, dane.FailureType(err))
		}
		if len(dane.Usable([]resolver.TLSA{rec})) == 0 && !errors.Is(err, dane.ErrNoUsable) {
			t.Fatalf("Verify(%s) of an unusable record = %v, want ErrNoUsable", rec, err)
		}
	})
}
