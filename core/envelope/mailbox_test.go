package envelope

import "testing"

func TestMailbox(t *testing.T) {
	for _, tc := range []struct {
		a, b Address
		same bool
	}{
		{Address{"alice", "example.test"}, Address{"alice", "example.test"}, true},
		{Address{"alice", "example.test"}, Address{"Alice", "Example.TEST"}, true},
		{Address{"jörg", "example.test"}, Address{"JÖRG", "example.test"}, true},
		{Address{"alice", "example.test"}, Address{"alice", "example.test."}, true},
		{Address{"alice", "example.test"}, Address{"alice2", "example.test"}, false},
		{Address{"alice", "example.test"}, Address{"alice", "example.org"}, false},
		{Address{}, Address{}, true},
	} {
		if got := tc.a.Mailbox() == tc.b.Mailbox(); got != tc.same {
			t.Errorf("%q.Mailbox() == %q.Mailbox(): %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
}

func TestDomainFoldASCII(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Example.TEST", "example.test"},
		{"example.test.", "example.test"},
		{"\u212Aiosk.test", "\u212Aiosk.test"}, // a Kelvin sign is not "k"
		{"\u0130stanbul.test", "\u0130stanbul.test"},
		{"bücher.test", "bücher.test"},
		{"", ""},
	} {
		if got := (Address{Local: "a", Domain: tc.in}).DomainFold(); got != tc.want {
			t.Errorf("DomainFold of %q = %q, want %q", tc.in, got, tc.want)
		}
	}
	if a, b := (Address{"a", "\u212Aiosk.test"}), (Address{"a", "kiosk.test"}); a.Mailbox() == b.Mailbox() {
		t.Errorf("%q and %q are one mailbox", a, b)
	}
}
