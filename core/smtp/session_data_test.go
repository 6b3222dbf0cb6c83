package smtp

import (
	"strings"
	"testing"
)

// countReceived is the obvious version of hopCounter over a whole message:
// header lines up to the first empty one, CRs at either end ignored.
func countReceived(msg string) int {
	n := 0
	for line := range strings.SplitSeq(msg, "\n") {
		line = strings.Trim(line, "\r")
		if line == "" {
			break
		}
		if len(line) < len(receivedField) || !strings.EqualFold(line[:len(receivedField)], receivedField) {
			continue
		}
		if strings.HasPrefix(strings.TrimLeft(line[len(receivedField):], " \t"), ":") {
			n++
		}
	}
	return n
}

func TestHopCounter(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		want int
	}{
		{"none", "Subject: x\r\n\r\nbody\r\n", 0},
		{"two", "Received: a\r\nreceived: b\r\n\r\n", 2},
		{"blank before colon", "Received \t: a\r\n\r\n", 1},
		{"look-alikes", "X-Received: a\r\nReceived-SPF: b\r\nReceive: c\r\nReceivedx: d\r\n Received: e\r\n\r\n", 0},
		{"no colon", "Received\r\nReceived x\r\n\r\n", 0},
		{"body not counted", "Received: a\r\n\r\nReceived: b\r\n", 1},
		{"no header section", "\r\nReceived: a\r\n", 0},
		{"no end of header", "Received: a\r\nReceived: b", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var whole hopCounter
			whole.scan([]byte(tt.msg))
			if whole.n != tt.want {
				t.Errorf("in one write: got %d, want %d", whole.n, tt.want)
			}
			var bytewise hopCounter
			for i := range len(tt.msg) {
				bytewise.scan([]byte(tt.msg[i : i+1]))
			}
			if bytewise.n != tt.want {
				t.Errorf("a byte a write: got %d, want %d", bytewise.n, tt.want)
			}
			if got := countReceived(tt.msg); got != tt.want {
				t.Errorf("countReceived: got %d, want %d", got, tt.want)
			}
		})
	}
}

// FuzzHopCounter checks that where the content is split does not change
// the count, and that the count is the obvious one.
func FuzzHopCounter(f *testing.F) {
	f.Add("Received: a\r\nRECEIVED : b\r\n\r\nReceived: c\r\n", 14)
	f.Add("X-Received: a\r\n Received: b\r\nReceived:c\n\n", 3)
	f.Add("\r\r\nReceived: a\r\n", 1)
	f.Fuzz(func(t *testing.T, msg string, cut int) {
		if cut < 0 || cut > len(msg) {
			cut = len(msg) / 2
		}
		var whole, split hopCounter
		whole.scan([]byte(msg))
		split.scan([]byte(msg[:cut]))
		split.scan([]byte(msg[cut:]))
		if whole.n != split.n {
			t.Errorf("%q: one write counts %d, split at %d counts %d", msg, whole.n, cut, split.n)
		}
		if want := countReceived(msg); whole.n != want {
			t.Errorf("%q: got %d, want %d", msg, whole.n, want)
		}
	})
}
