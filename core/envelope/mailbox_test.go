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
