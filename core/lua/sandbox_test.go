package lua_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/sdk"
)

// eval runs expr in on_connect and returns tostring of its value, or the
// error text.
func eval(t *testing.T, expr string, opt ...lua.Options) string {
	t.Helper()
	s := load(t, fmt.Sprintf("function on_connect(ctx)\n  ctx:note('v', tostring(%s))\nend", expr), opt...)
	_, eff, err := s.Handle(context.Background(), request(sdk.StageConnect))
	if err != nil {
		return "error: " + err.Error()
	}
	return eff.Notes["lua.t/v"]
}

func TestSandbox(t *testing.T) {
	tests := []struct {
		expr string
		want string
	}{
		{"io", "nil"},
		{"os.execute", "nil"},
		{"os.exit", "nil"},
		{"os.getenv", "nil"},
		{"os.remove", "nil"},
		{"os.rename", "nil"},
		{"os.tmpname", "nil"},
		{"require", "nil"},
		{"module", "nil"},
		{"package", "nil"},
		{"load", "nil"},
		{"loadstring", "nil"},
		{"loadfile", "nil"},
		{"dofile", "nil"},
		{"debug", "nil"},
		{"channel", "nil"},
		{"collectgarbage", "nil"},
		{"getfenv", "nil"},
		{"setfenv", "nil"},
		{"newproxy", "nil"},
		{"_printregs", "nil"},
		{"string.dump", "nil"},
		{"type(os.time())", "number"},
		{"type(os.date('%Y'))", "string"},
		{"type(os.clock())", "number"},
		{"type(coroutine.create)", "function"},
		{"math.floor(2.5)", "2"},
		{"table.concat({1, 2}, '-')", "1-2"},
		{"('abc'):upper()", "ABC"},
		{"getmetatable(gw.accept())", "gw.verdict"},
		{"pcall(error, 'x')", "false"},
		{"#string.rep('ab', 3)", "6"},
		{"string.rep('ab', 0)", ""},
		{"select(2, pcall(string.format, '%999d', 1))", "t.lua:2: string.format: invalid format (width or precision too long)"},
		{"string.format('%5.2f|%-3s|%%', 1.5, 'a')", " 1.50|a  |%"},
		{"select('#', unpack({1, 2, 3}))", "3"},
		{"(pcall(unpack, {}, 1, 1e6))", "false"},
		{"(pcall(print, 'to the log, not stdout'))", "true"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			if got := eval(t, tt.expr); got != tt.want {
				t.Errorf("%s = %q, want %q", tt.expr, got, tt.want)
			}
		})
	}
	t.Run("MaxMemory bounds the value stack", func(t *testing.T) {
		// 1 MiB: 8192 slots; 10000 values fit with the default, not here.
		expr := "(pcall(string.byte, string.rep('x', 10000), 1, -1))"
		if got := eval(t, expr, lua.Options{MaxMemory: 1 << 20}); got != "false" {
			t.Errorf("10000 values with MaxMemory 1 MiB: %s, want false (too many for the value stack)", got)
		}
		if got := eval(t, expr); got != "true" {
			t.Errorf("10000 values with the default MaxMemory: %s, want true", got)
		}
	})
}

// TestGsub checks the replacement string.gsub against Lua 5.1 semantics.
func TestGsub(t *testing.T) {
	tests := []struct {
		expr string
		want string
	}{
		{`select(1, string.gsub("hello world", "o", "0"))`, "hell0 w0rld"},
		{`select(2, string.gsub("hello world", "o", "0"))`, "2"},
		{`select(1, string.gsub("hello world", "o", "0", 1))`, "hell0 world"},
		{`select(1, string.gsub("hello world", "(o)", "[%1]"))`, "hell[o] w[o]rld"},
		{`select(1, string.gsub("hello", "l+", "<%0>"))`, "he<ll>o"},
		{`select(1, string.gsub("abc", "", "-"))`, "-a-b-c-"},
		{`select(1, string.gsub("a=1, b=2", "(%w+)=(%w+)", "%2=%1"))`, "1=a, 2=b"},
		{`select(1, string.gsub("100%", "%%", "%%%%"))`, "100%%"},
		{`select(1, string.gsub("$name is $age", "%$(%w+)", {name = "Ann", age = 7}))`, "Ann is 7"},
		{`select(1, string.gsub("$name $x", "%$(%w+)", {name = "Ann"}))`, "Ann $x"},
		{`select(1, string.gsub("a b", "%w", function(c) return c:upper() end))`, "A B"},
		{`select(1, string.gsub("a b", "%w", function(c) return nil end))`, "a b"},
		{`select(1, string.gsub("a b", "%w", function(c) return false end))`, "a b"},
		{`select(1, string.gsub("ab", "()", "%1"))`, "1a2b3"},
		{`select(1, string.gsub("user@Internal.Example", "@([%w%.%-]+)", function(d) return "@x.test" end))`, "user@x.test"},
		{`select(1, string.gsub("line\nline\n", "\n", "\r\n"))`, "line\r\nline\r\n"},
		{`select(2, pcall(string.gsub, "x", "(", "y"))`, "t.lua:2: unfinished capture"},
		{`select(2, pcall(string.gsub, "x", "x", "%2"))`, "t.lua:2: invalid capture index %2"},
		{`select(2, pcall(string.gsub, "x", "x", function() return {} end))`, "t.lua:2: invalid replacement value (a table)"},
		{`("x"):gsub("x", "y")`, "y"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got := eval(t, tt.expr)
			if got != tt.want && !(strings.HasPrefix(tt.want, "t.lua:2: ") && strings.Contains(got, strings.TrimPrefix(tt.want, "t.lua:2: "))) {
				t.Errorf("%s = %q, want %q", tt.expr, got, tt.want)
			}
		})
	}
}
