package authguard

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a fake clock; tests move it with set.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = epoch.Add(d)
}

// step is one event of a limiter script, at a time after epoch:
//
//	fail IP      an attempt from IP that fails: want the delay, or "locked"
//	succeed IP   an attempt that succeeds: want "ok" or "locked"
//	abandon IP   an attempt that decides nothing: want "ok" or "locked"
//	begin IP     an attempt held open, ended by a later "end IP": "ok" or "locked"
//	end IP       Abandon of the last attempt held open for IP
//	locked IP    Locked: want "yes" or "no"
type step struct {
	at   time.Duration
	do   string
	want string
}

func TestLimiter(t *testing.T) {
	const lockout = 15 * time.Minute
	d := time.Second
	tests := []struct {
		name       string
		limit, max int
		steps      []step
	}{{
		name: "the failure that reaches the limit locks out, even a correct password",
		steps: []step{
			{0, "fail 192.0.2.1", "0s"}, {1, "fail 192.0.2.1", "1s"}, {2, "fail 192.0.2.1", "1s"},
			{3, "locked 192.0.2.1", "no"},
			{4, "fail 192.0.2.1", "1s"}, {5, "locked 192.0.2.1", "no"},
			{6, "fail 192.0.2.1", "1s"}, {7, "locked 192.0.2.1", "yes"},
			{8, "succeed 192.0.2.1", "locked"}, {9, "fail 192.0.2.1", "locked"},
			{10, "locked 192.0.2.2", "no"}, {11, "succeed 192.0.2.2", "ok"},
		},
	}, {
		name: "a lockout lasts its length from the last failure, then everything is forgotten",
		steps: []step{
			{0, "fail 192.0.2.1", "0s"}, {0, "fail 192.0.2.1", "1s"}, {0, "fail 192.0.2.1", "1s"},
			{0, "fail 192.0.2.1", "1s"}, {time.Minute, "fail 192.0.2.1", "1s"},
			{time.Minute + lockout - 1, "locked 192.0.2.1", "yes"},
			{time.Minute + lockout - 1, "succeed 192.0.2.1", "locked"},
			{time.Minute + lockout, "locked 192.0.2.1", "no"},
			{time.Minute + lockout, "fail 192.0.2.1", "0s"},
		},
	}, {
		name: "the window slides: old failures stop counting",
		steps: []step{
			{0, "fail 192.0.2.1", "0s"}, {5 * time.Minute, "fail 192.0.2.1", "1s"},
			{10 * time.Minute, "fail 192.0.2.1", "1s"}, {14 * time.Minute, "fail 192.0.2.1", "1s"},
			{16 * time.Minute, "fail 192.0.2.1", "1s"}, {16 * time.Minute, "locked 192.0.2.1", "no"},
			{17 * time.Minute, "fail 192.0.2.1", "1s"}, {17 * time.Minute, "locked 192.0.2.1", "yes"},
		},
	}, {
		name: "success and abandon do not count, nor reset the count",
		steps: []step{
			{0, "fail 192.0.2.1", "0s"}, {0, "fail 192.0.2.1", "1s"},
			{1, "succeed 192.0.2.1", "ok"}, {2, "abandon 192.0.2.1", "ok"},
			{3, "fail 192.0.2.1", "1s"}, {3, "fail 192.0.2.1", "1s"}, {4, "fail 192.0.2.1", "1s"},
			{5, "locked 192.0.2.1", "yes"},
		},
	}, {
		name: "IPv6 counts per /64, IPv4 per address, mapped IPv4 as IPv4",
		steps: []step{
			{0, "fail 2001:db8::1", "0s"}, {0, "fail 2001:db8::2", "1s"},
			{0, "fail 2001:db8::ffff:ffff:ffff:ffff", "1s"}, {0, "fail 2001:db8::3", "1s"},
			{0, "fail 2001:db8:0:0:8000::1", "1s"},
			{1, "locked 2001:db8::abcd", "yes"}, {1, "succeed 2001:db8::9", "locked"},
			{1, "locked 2001:db8:0:1::1", "no"}, {1, "succeed 2001:db8:0:1::1", "ok"},
			{2, "fail 192.0.2.1", "0s"}, {2, "fail ::ffff:192.0.2.1", "1s"},
			{2, "fail 192.0.2.2", "0s"},
		},
	}, {
		name:  "attempts in progress count against the limit",
		limit: 2,
		steps: []step{
			{0, "begin 192.0.2.1", "ok"}, {0, "begin 192.0.2.1", "ok"},
			{0, "begin 192.0.2.1", "locked"}, {0, "locked 192.0.2.1", "no"},
			{1, "end 192.0.2.1", ""}, {1, "fail 192.0.2.1", "0s"},
			{2, "abandon 192.0.2.1", "locked"},
			{3, "end 192.0.2.1", ""}, {3, "fail 192.0.2.1", "1s"},
			{4, "locked 192.0.2.1", "yes"},
		},
	}, {
		name:  "a full table forgets an idle network, never a locked-out one",
		limit: 1, max: 2,
		steps: []step{
			{0, "fail 192.0.2.1", "0s"}, {0, "locked 192.0.2.1", "yes"},
			{1, "succeed 192.0.2.2", "ok"}, {2, "succeed 192.0.2.3", "ok"},
			{3, "succeed 192.0.2.4", "ok"}, {4, "locked 192.0.2.1", "yes"},
			{5, "fail 192.0.2.5", "0s"}, {5, "locked 192.0.2.5", "yes"},
			// Both remembered networks are locked out: a third is
			// refused (fail closed), since nobody could count it.
			{6, "fail 192.0.2.6", "locked"}, {6, "locked 192.0.2.6", "no"},
			{7, "locked 192.0.2.1", "yes"}, {7, "locked 192.0.2.5", "yes"},
		},
	}, {
		name:  "a full table keeps a network's failures",
		limit: 2, max: 2,
		steps: []step{
			{0, "fail 192.0.2.1", "0s"}, {1, "succeed 192.0.2.2", "ok"},
			{2, "succeed 192.0.2.3", "ok"}, // forgets .2, not .1 and its failure
			{3, "fail 192.0.2.1", "1s"}, {3, "locked 192.0.2.1", "yes"},
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{}
			opt := Options{FailureLimit: 5, Lockout: lockout, FailureDelay: d, MaxClients: 1000, Now: clk.Now}
			if tc.limit > 0 {
				opt.FailureLimit = tc.limit
			}
			if tc.max > 0 {
				opt.MaxClients = tc.max
			}
			g := New(opt)
			held := map[string][]*Attempt{}
			for i, st := range tc.steps {
				clk.set(st.at)
				op, ip, _ := strings.Cut(st.do, " ")
				if got := runStep(t, g, held, op, netip.MustParseAddr(ip)); got != st.want {
					t.Fatalf("step %d (%s at %v): got %q, want %q", i, st.do, st.at, got, st.want)
				}
			}
		})
	}
}

// runStep runs one step's operation and returns its outcome as a step's
// want.
func runStep(t *testing.T, g *Guard, held map[string][]*Attempt, op string, ip netip.Addr) string {
	t.Helper()
	if op == "locked" {
		if g.Locked(ip) {
			return "yes"
		}
		return "no"
	}
	if op == "end" {
		h := held[ip.String()]
		h[len(h)-1].Abandon()
		held[ip.String()] = h[:len(h)-1]
		return ""
	}
	a, err := g.Begin(ip)
	if errors.Is(err, ErrLockedOut) {
		return "locked"
	} else if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	switch op {
	case "fail":
		return a.Fail().String()
	case "succeed":
		a.Succeed()
	case "abandon":
		a.Abandon()
	case "begin":
		held[ip.String()] = append(held[ip.String()], a)
	default:
		t.Fatalf("unknown step %q", op)
	}
	return "ok"
}

// TestAttemptEndsOnce: a second end of an attempt does not count again.
func TestAttemptEndsOnce(t *testing.T) {
	clk := &clock{}
	g := New(Options{FailureLimit: 2, Lockout: time.Minute, FailureDelay: time.Second, Now: clk.Now})
	ip := netip.MustParseAddr("192.0.2.1")
	a, err := g.Begin(ip)
	if err != nil {
		t.Fatal(err)
	}
	a.Fail()
	a.Fail()
	a.Abandon()
	if g.Locked(ip) {
		t.Fatal("two Fails of one attempt counted twice")
	}
	if _, err := g.Begin(ip); err != nil {
		t.Fatalf("Begin after one failure: %v", err)
	}
}

// TestNilGuard: a nil guard admits everything and runs checks at once.
func TestNilGuard(t *testing.T) {
	var g *Guard
	ip := netip.MustParseAddr("192.0.2.1")
	for range 10 {
		a, err := g.Begin(ip)
		if err != nil {
			t.Fatal(err)
		}
		if d := a.Fail(); d != 0 {
			t.Fatalf("delay %v", d)
		}
	}
	ran := false
	if err := g.Run(t.Context(), func() { ran = true }); err != nil || !ran || g.Locked(ip) {
		t.Fatalf("Run: %v, ran %v, locked %v", err, ran, g.Locked(ip))
	}
}

// TestNoLimit: a zero FailureLimit counts nothing.
func TestNoLimit(t *testing.T) {
	g := New(Options{Lockout: time.Minute})
	ip := netip.MustParseAddr("192.0.2.1")
	for range 100 {
		a, err := g.Begin(ip)
		if err != nil {
			t.Fatal(err)
		}
		a.Fail()
	}
	if g.Locked(ip) {
		t.Fatal("locked without a limit")
	}
}

func TestKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":               "192.0.2.1/32",
		"::ffff:192.0.2.1":        "192.0.2.1/32",
		"2001:db8:1:2:3:4:5:6":    "2001:db8:1:2::/64",
		"fe80::1%eth0":            "fe80::/64",
		"::1":                     "::/64",
		"2001:db8:1:2:ffff::ffff": "2001:db8:1:2::/64",
	} {
		if got := Key(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("Key(%s) = %s, want %s", in, got, want)
		}
	}
	if got := Key(netip.Addr{}); got.IsValid() {
		t.Errorf("Key(zero) = %v", got)
	}
}

// TestLimiterConcurrent: many goroutines from one network get no more
// than the limit of checks between them.
func TestLimiterConcurrent(t *testing.T) {
	const limit = 5
	g := New(Options{FailureLimit: limit, Lockout: time.Hour})
	var mu sync.Mutex
	admitted := 0
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			ip := netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i+1))
			a, err := g.Begin(ip)
			if err != nil {
				return
			}
			mu.Lock()
			admitted++
			mu.Unlock()
			a.Fail()
		})
	}
	wg.Wait()
	if admitted != limit {
		t.Fatalf("%d attempts admitted, want %d", admitted, limit)
	}
}
