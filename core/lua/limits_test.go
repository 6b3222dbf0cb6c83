package lua_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

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
}

// TestBombs runs each bomb with MaxMemory 32 MiB under a deadline of
// 500ms: it must fail with its error within 50ms of the deadline, its
// process must not grow by much more than MaxMemory, and the heap must
// come back down after it.
func TestBombs(t *testing.T) {
	const (
		maxMemory = 32 * mib
		deadline  = 500 * time.Millisecond
	)
	for _, b := range bombs {
		t.Run(b.name, func(t *testing.T) {
			s := load(t, "function on_connect(ctx)\n"+b.src+"\nend", lua.Options{MaxMemory: maxMemory})
			resetPeak(t)
			before := procStatus(t, "VmRSS")
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			_, _, err := s.Handle(ctx, request(sdk.StageConnect))
			took := time.Since(start)
			grew := procStatus(t, "VmHWM") - before
			if !errors.Is(err, b.want) {
				t.Fatalf("Handle = %v, want %v", err, b.want)
			}
			if limit := deadline + 50*time.Millisecond; took > limit {
				t.Errorf("Handle took %v, more than %v", took, limit)
			}
			if grew > 3*maxMemory {
				t.Errorf("the process grew by %d MiB, more than 3 x max memory (%d MiB)", grew/mib, 3*maxMemory/mib)
			}
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			t.Logf("%v after %v; peak growth %d MiB; heap after GC %d MiB", err, took.Round(time.Millisecond), grew/mib, ms.HeapAlloc/mib)
		})
	}
}
