package tlsrpt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/queue"
)

func TestCountBounds(t *testing.T) {
	var c counts
	for i := range maxPolicies {
		if !c.add(Policy{Domain: "example.test", Type: TypeSTS, MXHost: fmt.Sprint("mx", i)}, nil, 1) {
			t.Fatalf("policy %d not counted; want room for %d", i, maxPolicies)
		}
	}
	if c.add(Policy{Domain: "example.test", Type: TypeSTS, MXHost: "one-too-many"}, nil, 1) {
		t.Errorf("policy %d counted; want at most %d", maxPolicies+1, maxPolicies)
	}
	if !c.add(Policy{Domain: "example.test", Type: TypeSTS, MXHost: "mx0"}, nil, 1) || c.Policies[0].Summary.Successful != 2 {
		t.Errorf("a known policy was not counted once the table was full")
	}

	var d counts
	p := Policy{Domain: "example.test", Type: TypeTLSA}
	for i := range maxDetails + 5 {
		d.add(p, &Failure{ResultType: ResultTLSAInvalid, ReceivingIP: fmt.Sprint("192.0.2.", i)}, 1)
	}
	pr := d.Policies[0]
	if len(pr.FailureDetails) != maxDetails || pr.Summary.Failed != maxDetails+5 {
		t.Errorf("%d details, %d failures; want %d details and every failure (%d) in the summary",
			len(pr.FailureDetails), pr.Summary.Failed, maxDetails, maxDetails+5)
	}
}

func TestCleanAndTruncate(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes
	var c counts
	c.add(Policy{Domain: "example.test", Strings: []string{long, "mode: enforce"}}, &Failure{ReasonCode: long}, 1)
	c.add(Policy{Domain: "example.test", Strings: []string{long, "mode: enforce"}}, &Failure{ReasonCode: long}, 1)
	if len(c.Policies) != 1 || len(c.Policies[0].FailureDetails) != 1 {
		t.Fatalf("two equal long sessions made %d policies; want 1 counted twice", len(c.Policies))
	}
	pr := c.Policies[0]
	if pr.Policy.Type != TypeNoPolicy || pr.FailureDetails[0].ResultType != ResultValidationFailure {
		t.Errorf("empty type %q and result %q; want %q and %q", pr.Policy.Type, pr.FailureDetails[0].ResultType, TypeNoPolicy, ResultValidationFailure)
	}
	if s := pr.Policy.Strings[0]; len(s) != 254 || s != strings.Repeat("é", 127) {
		t.Errorf("policy string cut to %d bytes; want 254 (at a character boundary)", len(s))
	}
	if n := pr.FailureDetails[0].Sessions; n != 2 {
		t.Errorf("%d sessions; want 2", n)
	}
}

// TestEncodeSheds: a domain's day too big for the store loses failure
// details first, and still encodes.
func TestEncodeSheds(t *testing.T) {
	var c counts
	long := strings.Repeat("\x01", 250) // 6 bytes each in JSON
	for i := range maxPolicies {
		p := Policy{Domain: "example.test", Type: TypeSTS, MXHost: fmt.Sprint(i)}
		for j := range maxDetails {
			c.add(p, &Failure{ResultType: ResultValidationFailure, ReasonCode: fmt.Sprint(j, long)}, 1)
		}
	}
	v, shed, err := c.encode()
	if err != nil || len(v) > maxValue || shed == 0 {
		t.Fatalf("encode = %d bytes, %d shed, %v; want at most %d bytes after shedding", len(v), shed, err, maxValue)
	}
	back, err := decodeCounts(v)
	if err != nil {
		t.Fatalf("decode of an encoded value: %v", err)
	}
	if len(back.Policies) != maxPolicies || back.Policies[0].Summary.Failed != maxDetails {
		t.Errorf("shedding lost policies or counts: %d policies, %d failures", len(back.Policies), back.Policies[0].Summary.Failed)
	}
}

func TestDecodeCountsRefuses(t *testing.T) {
	for _, v := range []string{
		``,
		`[]`,
		`{"policies":[{"policy":{"policy-domain":"x"}}]}`,
		`{"policies":[{"policy":{"policy-type":"sts"},"summary":{"total-successful-session-count":-1}}]}`,
		`{"policies":[{"policy":{"policy-type":"sts"},"summary":{"total-failure-session-count":9007199254740992}}]}`,
		`{"policies":[{"policy":{"policy-type":"sts"},"failure-details":[{"failed-session-count":-2}]}]}`,
	} {
		if _, err := decodeCounts(v); err == nil {
			t.Errorf("decodeCounts(%q) = nil error; want one", v)
		}
	}
}

// TestUnreadableStoredValue: a damaged stored value is replaced by the
// new counts, not a reason to stop counting.
func TestUnreadableStoredValue(t *testing.T) {
	c := newClock(now)
	r := New(Options{Now: c.Now})
	ctx := context.Background()
	key := keyPrefix + "2026-12-05:example.test"
	if err := r.store.KVSet(ctx, key, "{not json", time.Hour); err != nil {
		t.Fatal(err)
	}
	r.Success(ctx, Policy{Domain: "example.test", Type: TypeNoPolicy})
	if err := r.flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	got, err := r.load(dayDomain{"2026-12-05", "example.test"}, c.Now())
	if err != nil || len(got.Policies) != 1 || got.Policies[0].Summary.Successful != 1 {
		t.Errorf("after the flush the stored day is %+v, %v; want one success", got, err)
	}
}

func TestNotCounted(t *testing.T) {
	r := New(Options{Now: newClock(now).Now})
	ctx := context.Background()
	for _, d := range []string{"", ".", "bad domain.test", "x\r\n.test", strings.Repeat("a", 254)} {
		r.Success(ctx, Policy{Domain: d})
	}
	r.Success(ctx, Policy{Domain: "Example.Test."})
	if len(r.pending) != 1 || r.pending[dayDomain{"2026-12-05", "example.test"}] == nil {
		t.Errorf("pending %v; want example.test alone", r.pending)
	}
}

func TestParseKey(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want dayDomain
		ok   bool
	}{
		{keyPrefix + "2026-12-05:example.test", dayDomain{"2026-12-05", "example.test"}, true},
		{keyPrefix + "2026-12-05:", dayDomain{}, false},
		{keyPrefix + "2026-13-05:example.test", dayDomain{}, false},
		{keyPrefix + "2026-12-05example.test", dayDomain{}, false},
		{"gw:mta-sts:example.test", dayDomain{}, false},
	} {
		got, ok := parseKey(tc.key)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseKey(%q) = %v, %v; want %v, %v", tc.key, got, ok, tc.want, tc.ok)
		}
	}
}

// TestConcurrentCounting: sessions counted while flushes run are all in
// the store after the last flush.
func TestConcurrentCounting(t *testing.T) {
	r := New(Options{Now: newClock(now).Now})
	ctx := context.Background()
	const workers, each = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if i%2 == 0 {
					r.Success(ctx, stsPolicy)
				} else {
					r.Failure(ctx, stsPolicy, Failure{ResultType: ResultCertificateExpired, ReceivingIP: fmt.Sprint("192.0.2.", w)})
				}
			}
		})
	}
	stop := make(chan struct{})
	flushed := make(chan error)
	go func() {
		for {
			select {
			case <-stop:
				flushed <- r.flush(ctx)
				return
			default:
				if err := r.flush(ctx); err != nil {
					flushed <- err
					return
				}
			}
		}
	}()
	wg.Wait()
	close(stop)
	if err := <-flushed; err != nil {
		t.Fatalf("flush: %v", err)
	}
	got, err := r.load(dayDomain{"2026-12-05", "example.test"}, now)
	if err != nil || len(got.Policies) != 1 {
		t.Fatalf("stored %+v, %v; want one policy", got, err)
	}
	pr := got.Policies[0]
	if s := pr.Summary; s.Successful != workers*each/2 || s.Failed != workers*each/2 || len(pr.FailureDetails) != workers {
		t.Errorf("stored summary %+v with %d details; want %d and %d with %d", s, len(pr.FailureDetails), workers*each/2, workers*each/2, workers)
	}
}

// TestFlushFailureKeeps: counts a store refuses stay in memory for the
// next flush.
func TestFlushFailureKeeps(t *testing.T) {
	spool, err := queue.Open(t.TempDir(), queue.Options{Now: newClock(now).Now})
	if err != nil {
		t.Fatal(err)
	}
	r := New(Options{Store: spool, Now: newClock(now).Now})
	ctx := context.Background()
	r.Success(ctx, stsPolicy)
	if err := spool.Close(); err != nil {
		t.Fatal(err)
	}
	r.Success(ctx, stsPolicy)
	if err := r.flush(ctx); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("flush to a closed spool = %v; want ErrClosed", err)
	}
	r.Success(ctx, stsPolicy)
	c := r.pending[dayDomain{"2026-12-05", "example.test"}]
	if c == nil || c.Policies[0].Summary.Successful != 3 {
		t.Errorf("pending after a failed flush: %+v; want the 3 successes", c)
	}
}

var _ Store = (*queue.Spool)(nil)
