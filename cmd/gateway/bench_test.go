package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestBench(t *testing.T) {
	addr, stop := startSink(t)
	for _, tc := range []struct {
		args     []string
		messages int64
	}{
		{[]string{"--messages", "300", "--concurrency", "4", "--size", "1500", "--rcpts", "2"}, 300},
		{[]string{"--messages", "20", "--concurrency", "30", "--size", "1500", "--pipelining=false"}, 20},
	} {
		code, out, errOut := runWithInput(t, "", append([]string{"bench", "--server", addr, "--json"}, tc.args...)...)
		if code != 0 {
			t.Fatalf("bench %q: code %d, stderr %q, stdout %q", tc.args, code, errOut, out)
		}
		var rep benchReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("bench --json printed %q: %v", out, err)
		}
		if rep.Messages != tc.messages || rep.Failures != 0 || rep.MessagesPerSecond <= 0 ||
			rep.LatencyMaxms < rep.LatencyP50ms || rep.CPUSeconds <= 0 {
			t.Errorf("bench %q report %+v", tc.args, rep)
		}
	}
	if got, want := sinkTotals(t, stop()), "messages=320 bytes=480000"; got != want {
		t.Errorf("sink totals %q, want %q", got, want)
	}
}

func TestBenchFailures(t *testing.T) {
	addr, _ := startSink(t, "--rcpt-reply", "550 5.1.1 No such user")
	code, out, _ := runWithInput(t, "", "bench", "--server", addr, "--json", "--messages", "10", "--concurrency", "2")
	var rep benchReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("bench --json printed %q: %v", out, err)
	}
	if code != 1 || rep.Messages != 0 || rep.Failures != 10 ||
		len(rep.FailureReplies) != 1 || rep.FailureReplies[0] != "550 5.1.1 No such user" {
		t.Errorf("bench: code %d, report %+v; want 1 and 10 failures with the 550 reply", code, rep)
	}

	// Nobody listening: every message fails, bench still ends.
	code, out, _ = runWithInput(t, "", "bench", "--server", "127.0.0.1:1", "--messages", "3", "--concurrency", "2")
	if code != 1 || !strings.Contains(out, "0 sent, 3 failed") {
		t.Errorf("bench without a server: code %d, stdout %q", code, out)
	}
}

func TestBenchBody(t *testing.T) {
	now := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	minimum := -1
	for size := 0; size < 400; size++ {
		b, err := benchBody(size, "bench@bench.test", "rcpt1@example.test", now)
		if err != nil {
			continue
		}
		if minimum < 0 {
			minimum = size
		}
		checkBenchBody(t, size, b)
	}
	if minimum < 0 || minimum > 200 {
		t.Fatalf("smallest body %d bytes", minimum)
	}
	for _, size := range []int{2048, 10000, 1 << 20} {
		b, err := benchBody(size, "bench@bench.test", "rcpt1@example.test", now)
		if err != nil {
			t.Fatal(err)
		}
		checkBenchBody(t, size, b)
	}
}

func checkBenchBody(t *testing.T, size int, b []byte) {
	t.Helper()
	if len(b) != size || !bytes.HasSuffix(b, []byte("\r\n")) {
		t.Fatalf("size %d: body of %d bytes, ends %q", size, len(b), b[max(0, len(b)-4):])
	}
	header, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok || !bytes.HasPrefix(header, []byte("From: <bench@bench.test>\r\n")) {
		t.Fatalf("size %d: no header block in %q", size, b)
	}
	for _, l := range bytes.SplitAfter(body, []byte("\r\n")) {
		if len(l) > 78 || bytes.HasPrefix(l, []byte(".")) || bytes.Count(l, []byte("\n")) > 1 {
			t.Fatalf("size %d: bad filler line %q", size, l)
		}
	}
}
