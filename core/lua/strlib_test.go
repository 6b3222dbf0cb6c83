package lua_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/sdk"
)

// TestStringLib checks the state's own string, table and coroutine
// functions, and the .. operator, against Lua 5.1 (and gopher-lua where
// they differ only in wording).
func TestStringLib(t *testing.T) {
	tests := []struct{ expr, want string }{
		// ..
		{`1 .. 2`, "12"},
		{`"a" .. 1.5`, "a1.5"},
		{`tostring(2^53) == 2^53 .. ""`, "true"},
		{`setmetatable({}, {__concat = function(a, b) return type(a) .. type(b) end}) .. "x"`, "tablestring"},
		{`"x" .. setmetatable({}, {__concat = function(a, b) return type(a) .. type(b) end})`, "stringtable"},
		{`"a" .. "b" .. setmetatable({}, {__concat = function(a, b) return "[" .. b .. "]" end}) .. "c"`, "ab[c]"},
		{`select(2, pcall(function() return "a" .. nil end))`, "t.lua:2: cannot perform concat operation between string and nil"},
		{`(function() local log = {} local function f(x) log[#log + 1] = x return x end local s = f("a") .. f("b") .. f("c") return s .. table.concat(log) end)()`, "abcabc"},
		{`(function() return "a" .. "b" end)()`, "ab"},
		{`(function(k, v) v = v .. "!" return v end)(1, "x")`, "x!"},
		{`select("#", ("a" .. "b"))`, "1"},
		{`#({("a" .. "b")})`, "1"},
		// sub, byte, char, rep, upper, lower, reverse
		{`("hello"):sub(2, 3)`, "el"},
		{`("hello"):sub(-3)`, "llo"},
		{`("hello"):sub(0)`, "hello"},
		{`("hello"):sub(10)`, ""},
		{`("hello"):sub(2, 100)`, "ello"},
		{`("hello"):sub(-100, 2)`, "he"},
		{`("hello"):sub(3, 2)`, ""},
		{`("abc"):byte()`, "97"},
		{`("abc"):byte(-1)`, "99"},
		{`select("#", ("abc"):byte(1, -1))`, "3"},
		{`select("#", ("abc"):byte(0))`, "0"},
		{`select("#", ("abc"):byte(2, 1))`, "0"},
		{`string.char(104, 105)`, "hi"},
		{`(pcall(string.char, 256))`, "false"},
		{`("ab"):rep(3)`, "ababab"},
		{`("x"):rep(-1)`, ""},
		{`#string.rep("abc", 100000)`, "300000"},
		{`("aBc"):upper() .. ("aBc"):lower()`, "ABCabc"},
		{`("abc"):reverse()`, "cba"},
		// find, match, gmatch
		{`string.find("a.b", ".", 1, true)`, "2"},
		{`string.find("a.b", "%.")`, "2"},
		{`string.find("abc", "b", 10)`, "nil"},
		{`string.find("abc", "", 10)`, "4"},
		{`string.find("abc", "b", -1)`, "nil"},
		{`string.find("abc", "c", -1)`, "3"},
		{`select(2, string.find("abc", "bc"))`, "3"},
		{`select(3, string.find("key=val", "(%w+)=(%w+)"))`, "key"},
		{`select("#", string.find("key=val", "%w+"))`, "2"},
		{`string.match("abcabc", "b", 3)`, "b"},
		{`string.match("abc", "()b")`, "2"},
		{`string.match("abc", "x")`, "nil"},
		{`select("#", string.match("key=val", "(%w+)=(%w+)"))`, "2"},
		{`string.match("  x  ", "^%s*(.-)%s*$")`, "x"},
		{`string.match("user@Example.TEST", "@([^@]*)$")`, "Example.TEST"},
		{`(function() local t = {} for k, v in string.gmatch("a=1, b=2", "(%w+)=(%w+)") do t[#t + 1] = k .. v end return table.concat(t, ",") end)()`, "a1,b2"},
		{`(function() local n = 0 for w in ("abc"):gmatch("x*") do n = n + 1 end return n end)()`, "4"},
		{`(function() local n = 0 for w in ("^a^a"):gmatch("^a") do n = n + 1 end return n end)()`, "2"},
		{`(function() local t = {} for w in ("one two"):gmatch("%a+") do t[#t + 1] = w end return table.concat(t, "|") end)()`, "one|two"},
		{`select(2, pcall(string.find, "x", "[a"))`, "t.lua:2: malformed pattern (missing ']')"},
		{`select(2, pcall(string.match, "x", "(()"))`, "t.lua:2: unfinished capture"},
		// gsub beyond TestGsub
		{`(("aaa"):gsub("^a", "b"))`, "baa"},
		{`(("abc"):gsub("b", 5))`, "a5c"},
		{`(("abc"):gsub("", "-", 2))`, "-a-bc"},
		{`(("hello world"):gsub("(%w+) (%w+)", "%2 %1"))`, "world hello"},
		{`(("x"):gsub("x", "%%"))`, "%"},
		// table.concat, table.sort, unpack
		{`table.concat({1, 2, 3}, ",", 2)`, "2,3"},
		{`table.concat({1, 2, 3}, ",", 2, 3)`, "2,3"},
		{`table.concat({1, 2, 3}, ",", 3, 2)`, ""},
		{`table.concat({}, ",")`, ""},
		{`select(2, pcall(table.concat, {1, {}, 3}))`, "t.lua:2: invalid value (table) at index 2 in table for concat"},
		{`(function() local t = {3, 1, 2} table.sort(t) return table.concat(t) end)()`, "123"},
		{`(function() local t = {3, 1, 2} table.sort(t, function(a, b) return a > b end) return table.concat(t) end)()`, "321"},
		{`(function() local t = {"b", "a", "c"} table.sort(t) return table.concat(t) end)()`, "abc"},
		{`(pcall(table.sort, {1, "a", 2}))`, "false"},
		{`select("#", unpack({1, 2, 3}, 2))`, "2"},
		// coroutines
		{`(function() local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end) local _, x = coroutine.resume(co, 1) local _, y = coroutine.resume(co, 10) return x .. "," .. y .. "," .. coroutine.status(co) end)()`, "2,20,dead"},
		{`(function() local f = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end) return f() .. f() .. f() end)()`, "123"},
		{`(function() local f = coroutine.wrap(function(a, b) local c = coroutine.yield(a + b) return c, "end" end) local x = f(1, 2) local y, z = f(7) return x .. y .. z end)()`, "37end"},
		{`select(2, pcall(coroutine.wrap(function() error("boom") end)))`, "t.lua:2: boom"},
		{`(function() local f = coroutine.wrap(function() end) f() return select(2, pcall(f)) end)()`, "can not resume a dead thread"},
		{`(function() local co = coroutine.create(function() return coroutine.running() end) return type(select(2, coroutine.resume(co))) end)()`, "thread"},
		{`type(os.date("%Y"))`, "string"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			if got := eval(t, tt.expr); got != tt.want {
				t.Errorf("%s = %q, want %q", tt.expr, got, tt.want)
			}
		})
	}
}

// TestConcatEverywhere uses .. in every place the grammar allows an
// expression: each must be rewritten (a place left out would be an
// unbounded concatenation), and the script must behave as before.
func TestConcatEverywhere(t *testing.T) {
	s := load(t, `
local t = {["k" .. 1] = "v" .. 1, "a" .. "b"}
t["x" .. "y"] = "z" .. "z"
local function f(a, ...) return a .. select("#", ...) end
function t.m(self, x) return "m" .. x end
local out = {}
local function put(v) out[#out + 1] = v end
function on_connect(ctx)
  if "a" .. "b" == "ab" then put("if") elseif ("c" .. "d") then put("elseif") end
  local i = 0
  while #("a" .. i) < 2 do i = i + 1 end
  repeat i = i + 1 until #("b" .. i) >= 2
  for j = #("ab"), #("a" .. "bc") do put("for" .. j) end
  for k, v in pairs({["p" .. "q"] = "r" .. "s"}) do put(k .. v) end
  put(t.k1 .. t[1] .. t.xy .. f("f" .. 1, "x" .. 1, "y") .. t:m("a" .. "b"))
  put(not ("a" .. "b") and "no" or "yes" .. "!")
  put(-(#("ab" .. "c")) .. "")
  do local x = {("a" .. "b"):upper()} put(x[1]) end
  ctx:note("out", table.concat(out, " "))
  return (function() return gw.accept(250, nil, "o" .. "k") end)()
end
`)
	d, eff := handle(t, s, request(sdk.StageConnect))
	if want := "if for2 for3 pqrs v1abzzf12mab yes! -3 AB"; eff.Notes["lua.t/out"] != want {
		t.Errorf("out = %q, want %q", eff.Notes["lua.t/out"], want)
	}
	if d.Verdict != sdk.Accept || d.Message != "ok" {
		t.Errorf("decision = %+v", d)
	}
}

// TestMemoryAcrossCalls: a state that keeps what its calls make (a
// global) fails the call that takes it past its limit, and is discarded:
// the next call runs on a new state. A call that makes much garbage but
// keeps little does not fail.
func TestMemoryAcrossCalls(t *testing.T) {
	s := load(t, `
keep = keep or {}
function on_connect(ctx) keep[#keep + 1] = string.rep("x", 2^20) ctx:note("n", #keep) end
function on_helo(ctx) for i = 1, 2000 do local s = string.rep("y", 2^16) .. i end end
`, lua.Options{MaxMemory: 8 << 20, Pool: 1})
	var failed error
	calls := 0
	for calls < 10 && failed == nil {
		calls++
		_, _, failed = s.Handle(context.Background(), request(sdk.StageConnect))
	}
	if !errors.Is(failed, lua.ErrMemoryLimit) {
		t.Fatalf("after %d calls: %v, want %v", calls, failed, lua.ErrMemoryLimit)
	}
	if calls < 3 {
		t.Errorf("the state failed at call %d, holding %d MiB of 8", calls, calls-1)
	}
	created := s.StatesCreated()
	_, eff, err := s.Handle(context.Background(), request(sdk.StageConnect))
	if err != nil || eff.Notes["lua.t/n"] != "1" || s.StatesCreated() != created+1 {
		t.Errorf("the call after: %v, n = %q, states %d then %d; want a new state", err, eff.Notes["lua.t/n"], created, s.StatesCreated())
	}
	if _, _, err := s.Handle(context.Background(), request(sdk.StageHelo)); err != nil {
		t.Errorf("128 MiB of garbage with max memory 8 MiB: %v", err)
	}
	if msg := failed.Error(); !strings.Contains(msg, "t.lua:3: string.rep: lua: memory limit exceeded") {
		t.Errorf("error %q does not say where", msg)
	}
}
