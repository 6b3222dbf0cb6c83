package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBenchmarkSinkLastWithoutMessages: examples/benchmark/lib.sh's
// sink_last is where run.sh and cluster.sh end a relay run (its start is
// taken before the load). A sink that has committed no message prints
// last=0.000000000; sink_last must fail on it, not hand it on as the
// run's end (1970, before any start), which made the run's rate come out
// negative ("-0.0") instead of the run failing.
func TestBenchmarkSinkLastWithoutMessages(t *testing.T) {
	bash, lib := benchmarkLib(t)
	start := time.Now()
	_, stop := startSink(t, "--report", "5ms")
	time.Sleep(50 * time.Millisecond) // a few reports
	out := stop()
	// The file as a benchmark reads it while the sink runs: its reports,
	// not the totals it prints when it stops.
	reports := regexp.MustCompile(`(?m)^messages=\d+ bytes=\d+ rate=.*$`).FindAllString(out, -1)
	if len(reports) == 0 {
		t.Fatalf("no report in:\n%s", out)
	}
	file := filepath.Join(t.TempDir(), "sink.out")
	if err := os.WriteFile(file, []byte(strings.Join(reports, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startArg := fmt.Sprintf("%d.%09d", start.Unix(), start.Nanosecond())
	// As cluster.sh's run_phase does after wait_count, with its rate().
	script := `. "$1"; MESSAGES=5000; end=$(sink_last "$2"); echo "end=$end"; echo "rate=$(calc "$MESSAGES / ($end - $3)" 1)"`
	got, err := exec.Command(bash, "-c", script, "bash", lib, file, startArg).CombinedOutput()
	if err != nil {
		return // sink_last (or calc) failed: the run fails, as it should
	}
	m := regexp.MustCompile(`(?m)^end=(.*)$`).FindStringSubmatch(string(got))
	if m == nil || m[1] == "" {
		return // no end: the run cannot be timed, and calc fails on it
	}
	end, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("sink_last gave %q: %v", m[1], err)
	}
	if end < float64(start.UnixNano())/1e9 {
		t.Errorf("with no message at the sink, sink_last gave an end of %s, before the run's start %s; the script went on with:\n%s\n(last line of the sink: %q)",
			m[1], startArg, got, reports[len(reports)-1])
	}
}

// TestBenchmarkCalcFailsOnDivisionByZero: lib.sh's calc replaced python3
// (whose ZeroDivisionError stopped the script, run under set -e), but
// mawk, the awk Debian installs, divides by zero without an error: 1/0
// prints "inf" and 0/0 "-nan", exit status 0, so that cluster.sh prints
// "copy wait -nan ms/msg" for an "on" run that made no copy (and run.sh a
// share of "inf") rather than stopping.
func TestBenchmarkCalcFailsOnDivisionByZero(t *testing.T) {
	bash, lib := benchmarkLib(t)
	for _, expr := range []string{"1000 * 0 / 0", "5000 / (1.5 - 1.5)"} {
		out, err := exec.Command(bash, "-c", `. "$1"; calc "$2" 2`, "bash", lib, expr).CombinedOutput()
		if err == nil {
			t.Errorf("calc %q = %q, exit status 0; want a failure, as python3's ZeroDivisionError was", expr, strings.TrimSpace(string(out)))
		}
	}
}

// benchmarkLib is bash and the absolute path of examples/benchmark/lib.sh;
// the test is skipped without bash.
func benchmarkLib(t *testing.T) (bash, lib string) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	lib, err = filepath.Abs("../../examples/benchmark/lib.sh")
	if err != nil {
		t.Fatal(err)
	}
	return bash, lib
}
