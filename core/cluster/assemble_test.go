package cluster

import (
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
)

// TestAssembleChecksOffsets: a copy is complete only with its parts in
// order at their offsets and as long as its record says; a part out of
// place spoils it until its record. A whole copy is its record (as long
// as its header says), then its body.
func TestAssembleChecksOffsets(t *testing.T) {
	part := func(off int) nats.Header {
		return nats.Header{hdrPart: []string{partBody}, hdrOffset: []string{strconv.Itoa(off)}}
	}
	record := func(size int) nats.Header {
		return nats.Header{hdrPart: []string{partRecord}, hdrSize: []string{strconv.Itoa(size)}}
	}
	whole := func(n string) nats.Header {
		return nats.Header{hdrPart: []string{partWhole}, hdrRecord: []string{n}}
	}
	type msg struct {
		h    nats.Header
		data string
	}
	for _, tc := range []struct {
		name string
		msgs []msg
		want string // the body; "-" = no copy
	}{
		{"in order", []msg{{part(0), "abc"}, {part(3), "de"}, {record(5), "{}"}}, "abcde"},
		{"empty body", []msg{{record(0), "{}"}}, ""},
		{"swapped parts", []msg{{part(3), "de"}, {part(0), "abc"}, {record(5), "{}"}}, "-"},
		{"a part twice", []msg{{part(0), "abc"}, {part(0), "abc"}, {part(3), "de"}, {record(5), "{}"}}, "-"},
		{"record before a part", []msg{{part(0), "abc"}, {record(5), "{}"}, {part(3), "de"}}, "-"},
		{"short", []msg{{part(0), "abc"}, {record(5), "{}"}}, "-"},
		{"whole", []msg{{whole("2"), "{}abcde"}}, "abcde"},
		{"whole, empty body", []msg{{whole("2"), "{}"}}, ""},
		{"whole after a stray part", []msg{{part(3), "de"}, {whole("2"), "{}abcde"}}, "abcde"},
		{"whole, record longer than the data", []msg{{whole("9"), "{}abc"}}, "-"},
		{"whole, no record length", []msg{{whole("x"), "{}abc"}}, "-"},
		{"whole, negative record length", []msg{{whole("-1"), "{}abc"}}, "-"},
	} {
		bodies := map[string][]byte{}
		got := "-"
		for _, m := range tc.msgs {
			if cp, done := assemble(bodies, "id", m.h, []byte(m.data)); done {
				got = string(cp.Body)
				if string(cp.Record) != "{}" {
					t.Errorf("%s: record %q; want {}", tc.name, cp.Record)
				}
			}
		}
		if got != tc.want {
			t.Errorf("%s: copy %q; want %q", tc.name, got, tc.want)
		}
	}
}
