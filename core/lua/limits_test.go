package lua_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/sdk"
)

// procStatus returns a field of /proc/self/status in bytes (VmRSS, VmHWM).
func procStatus(t testing.TB, field string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", field, err)
		}
		return kb << 10
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// resetPeak makes VmHWM the current RSS, after returning the free heap to
// the system, so that VmHWM later is the peak since now.
func resetPeak(t testing.TB) {
	t.Helper()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Skipf("cannot reset VmHWM: %v", err)
	}
}

const mib = 1 << 20

// cpuAfter returns a function that reports the CPU time the process has
// used since ctx was done (0 if it is not). A call that ends late on a
// busy machine has not worked past its deadline if it used little CPU
// after it.
func cpuAfter(ctx context.Context) func() time.Duration {
	var at atomic.Int64
	stop := context.AfterFunc(ctx, func() { at.Store(int64(cpuTime())) })
	return func() time.Duration {
		if stop() {
			return 0
		}
		for at.Load() == 0 {
			runtime.Gosched()
		}
		return cpuTime() - time.Duration(at.Load())
	}
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// bombs are scripts that took gigabytes or never ended before the call's
// meter: the reproductions and their relatives. Each is the body
// of on_connect.
var bombs = []struct {
	name string
	src  string
	want error // lua.ErrMemoryLimit or context.DeadlineExceeded
}{
	{"doubling", `local s = "x" for i = 1, 40 do s = s .. s end`, lua.ErrMemoryLimit},
	{"doubling in pcall", `while true do pcall(function() local s = "x" for i = 1, 40 do s = s .. s end end) end`, lua.ErrMemoryLimit},
	{"table.concat of 150 x 8 MiB", `local t, x = {}, string.rep("x", 8 * 2^20) for i = 1, 150 do t[i] = x end return table.concat(t)`, lua.ErrMemoryLimit},
	{"150 strings of 8 MiB", `local t = {} for i = 1, 150 do t[i] = string.rep("x", 8 * 2^20) end`, lua.ErrMemoryLimit},
	{"table of strings", `local t = {} for i = 1, 1e9 do t[i] = "a string of some length " .. i end`, lua.ErrMemoryLimit},
	{"table of tables", `local t = {} for i = 1, 1e9 do t[i] = {x = i, y = i} end`, lua.ErrMemoryLimit},
	{"global table", `big = {} for i = 1, 1e9 do big["k" .. i] = true end`, lua.ErrMemoryLimit},
	{"upvalue table", `local t = {} local function add(i) t[#t + 1] = i end for i = 1, 1e9 do add(i) end`, lua.ErrMemoryLimit},
	{"coroutines", `local t = {} for i = 1, 1e9 do t[i] = coroutine.create(function() end) end`, lua.ErrMemoryLimit},
	{"coroutine filling a table", `local t = {} coroutine.wrap(function() for i = 1, 1e9 do t[i] = i end end)()`, lua.ErrMemoryLimit},
	{"unpack into tables", `local u = {} for i = 1, 10000 do u[i] = i end local t = {} for i = 1, 1e9 do t[i] = {unpack(u)} end`, lua.ErrMemoryLimit},
	{"gsub growing", `local s = string.rep("x", 2^20) s = s:gsub("x", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")`, lua.ErrMemoryLimit},
	{"string.rep of 2 GB", `local s = string.rep("ab", 1e9)`, lua.ErrMemoryLimit},
	{"string.find", `string.find(string.rep("a", 30000), ".-.-.-b")`, context.DeadlineExceeded},
	{"string.match", `string.match(string.rep("a", 30000), ".-.-.-b")`, context.DeadlineExceeded},
	{"string.gmatch", `for x in string.gmatch(string.rep("a", 30000), ".-.-.-b") do end`, context.DeadlineExceeded},
	{"string.gsub", `string.gsub(string.rep("a", 30000), ".-.-.-b", "")`, context.DeadlineExceeded},
	{"gsub with a function", `string.gsub(string.rep("a", 1e6), ".", function(c) for i = 1, 1e4 do end return c end)`, context.DeadlineExceeded},
	{"table.sort", `local t = {} for i = 1, 3e5 do t[i] = (i * 7919) % 1000003 end while true do table.sort(t, function(a, b) return a > b end) table.sort(t) end`, context.DeadlineExceeded},
	{"loop", `while true do end`, context.DeadlineExceeded},
	{"loop in a coroutine", `coroutine.wrap(function() while true do end end)()`, context.DeadlineExceeded},
	{"gw.glob", `gw.glob("*" .. string.rep("a", 5000) .. "b", string.rep("a", 1e6))`, context.DeadlineExceeded},
}

// TestBombs runs each bomb with MaxMemory 32 MiB: it must fail with its
// error (under a deadline of 500ms for the slow ones, 10s for the big
// ones, so that a busy machine does not end them by their deadline
// first: 2s did, under -race with both cores loaded), within 50ms of the deadline, its process must not grow by much
// more than MaxMemory, and the heap must come back down after it.
func TestBombs(t *testing.T) {
	const maxMemory = 32 * mib
	for _, b := range bombs {
		t.Run(b.name, func(t *testing.T) {
			deadline := 500 * time.Millisecond
			if b.want == lua.ErrMemoryLimit {
				deadline = 10 * time.Second
			}
			s := load(t, "function on_connect(ctx)\n"+b.src+"\nend", lua.Options{MaxMemory: maxMemory})
			resetPeak(t)
			before := procStatus(t, "VmRSS")
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			late := cpuAfter(ctx)
			_, _, err := s.Handle(ctx, request(sdk.StageConnect))
			took, cpuLate := time.Since(start), late()
			grew := procStatus(t, "VmHWM") - before
			if !errors.Is(err, b.want) {
				t.Fatalf("Handle = %v, want %v", err, b.want)
			}
			if limit := deadline + 50*time.Millisecond; took > limit && cpuLate > 50*time.Millisecond {
				t.Errorf("Handle took %v, more than %v, and worked %v past its deadline", took, limit, cpuLate)
			}
			if grew > 3*maxMemory && !raceEnabled {
				t.Errorf("the process grew by %d MiB, more than 3 x max memory (%d MiB)", grew/mib, 3*maxMemory/mib)
			}
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			t.Logf("%v after %v (CPU past the deadline %v); peak growth %d MiB; heap after GC %d MiB",
				err, took.Round(time.Millisecond), cpuLate.Round(time.Millisecond), grew/mib, ms.HeapAlloc/mib)
		})
	}
}

// errOnly is a context that ends by its Err at its deadline while its
// Done closes only much later: a deadline whose timer nobody started, as
// core/hook's is until something waits on it.
type errOnly struct {
	context.Context // its Done closes after 10s
	at              time.Time
}

func (c errOnly) Deadline() (time.Time, bool) { return c.at, true }

func (c errOnly) Err() error {
	if time.Now().Before(c.at) {
		return c.Context.Err()
	}
	return context.DeadlineExceeded
}

// TestDeadlineWithoutDone checks that the meter holds a call to its
// context's Err, not only to its Done, both in the script's code and in
// a coroutine, and that a chain's timeout ends a loop the same way.
func TestDeadlineWithoutDone(t *testing.T) {
	for _, src := range []string{`while true do end`, `coroutine.wrap(function() while true do end end)()`} {
		s := load(t, "function on_connect(ctx)\n"+src+"\nend")
		late, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ctx := errOnly{late, time.Now().Add(50 * time.Millisecond)}
		start := time.Now()
		_, _, err := s.Handle(ctx, request(sdk.StageConnect))
		cancel()
		if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > 5*time.Second {
			t.Errorf("%s: Handle = %v after %v, want DeadlineExceeded after about 50ms", src, err, took)
		}
	}

	s := load(t, "function on_connect(ctx)\nwhile true do end\nend")
	chain := hook.NewChain(nil, hook.Entry{Handler: s, Timeout: 50 * time.Millisecond, OnError: hook.OnErrorReject})
	res := chain.Dispatch(context.Background(), request(sdk.StageConnect))
	if res.Decision.Code != 554 || !strings.Contains(res.Decision.Reason, "deadline exceeded") {
		t.Errorf("Dispatch = %+v, want the on_error reject for the deadline", res.Decision)
	}
}

// TestDeadlineInFewInstructions checks that a call that runs few
// instructions, each making a long string, stops soon after its deadline
// although its instructions never make a batch: the host functions look
// at the context before they make much. Of 100 rounds (about 800
// instructions) it may run the few its first 10ms allow.
func TestDeadlineInFewInstructions(t *testing.T) {
	var logged bytes.Buffer
	s := load(t, `
function on_connect(ctx)
  for i = 1, 100 do gw.log("info", "round") local s = string.rep("x", 2^22) end
end
`, lua.Options{Log: slog.New(slog.NewTextHandler(&logged, nil))})
	late, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx := errOnly{late, time.Now().Add(10 * time.Millisecond)}
	if _, _, err := s.Handle(ctx, request(sdk.StageConnect)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Handle = %v, want DeadlineExceeded", err)
	}
	if n := strings.Count(logged.String(), "msg=round"); n < 1 || n >= 50 {
		t.Errorf("%d rounds ran, want a few", n)
	}
}
