package message

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

// countReceived is the obvious version of HopCounter over a whole message:
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

var hopTests = []struct {
	name string
	msg  string
	want int
}{
	{"none", "Subject: x\r\n\r\nbody\r\n", 0},
	{"two", "Received: a\r\nreceived: b\r\n\r\n", 2},
	{"mixed case, folded", "Received: a\r\nRECEIVED: b\r\n\tReceived: folded, not a field\r\nreceived:c\r\n\r\n", 3},
	{"blank before colon", "Received \t: a\r\n\r\n", 1},
	{"look-alikes", "X-Received: a\r\nReceived-SPF: b\r\nReceive: c\r\nReceivedx: d\r\n Received: e\r\n\r\n", 0},
	{"no colon", "Received\r\nReceived x\r\n\r\n", 0},
	{"body not counted", "Received: a\r\n\r\nReceived: b\r\n", 1},
	{"bare LF", "Received: a\nReceived: b\n\nReceived: body\n", 2},
	{"long line", "X-Long: " + strings.Repeat("a", 10000) + " Received: not a field\r\nReceived: a\r\n\r\n", 1},
	{"no header section", "\r\nReceived: a\r\n", 0},
	{"no end of header", "Received: a\r\nReceived: b", 2},
}

func TestHopCounter(t *testing.T) {
	for _, tt := range hopTests {
		t.Run(tt.name, func(t *testing.T) {
			var whole HopCounter
			whole.Write([]byte(tt.msg))
			if whole.Hops() != tt.want {
				t.Errorf("in one write: got %d, want %d", whole.Hops(), tt.want)
			}
			var bytewise HopCounter
			for i := range len(tt.msg) {
				bytewise.Write([]byte(tt.msg[i : i+1]))
			}
			if bytewise.Hops() != tt.want {
				t.Errorf("a byte a write: got %d, want %d", bytewise.Hops(), tt.want)
			}
			if got := countReceived(tt.msg); got != tt.want {
				t.Errorf("countReceived: got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestCountHops(t *testing.T) {
	for _, tt := range hopTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CountHops(iotest.OneByteReader(strings.NewReader(tt.msg)), 50)
			if err != nil || got != tt.want {
				t.Errorf("CountHops = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
	for _, tt := range hopTests {
		if got := CountHopsIn([]byte(tt.msg)); got != tt.want {
			t.Errorf("%s: CountHopsIn = %d; want %d", tt.name, got, tt.want)
		}
	}
	t.Run("stops past limit", func(t *testing.T) {
		r := strings.NewReader(strings.Repeat("Received: x\r\n", 200) + "\r\n")
		got, err := CountHops(iotest.OneByteReader(r), 3)
		if err != nil || got != 4 {
			t.Errorf("CountHops = %d, %v; want 4", got, err)
		}
		if r.Len() == 0 {
			t.Errorf("CountHops read the whole message past the limit")
		}
	})
	t.Run("read error", func(t *testing.T) {
		_, err := CountHops(iotest.ErrReader(iotest.ErrTimeout), 3)
		if !errors.Is(err, iotest.ErrTimeout) {
			t.Errorf("CountHops error %v; want %v", err, iotest.ErrTimeout)
		}
	})
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
		var whole, split HopCounter
		whole.Write([]byte(msg))
		split.Write([]byte(msg[:cut]))
		split.Write([]byte(msg[cut:]))
		if whole.Hops() != split.Hops() {
			t.Errorf("%q: one write counts %d, split at %d counts %d", msg, whole.Hops(), cut, split.Hops())
		}
		if want := countReceived(msg); whole.Hops() != want {
			t.Errorf("%q: got %d, want %d", msg, whole.Hops(), want)
		}
	})
}
