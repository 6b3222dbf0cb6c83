package sdk

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// configBlock has every setting in both the canonical form the host sends
// and the generic form a direct caller may pass.
var configBlock = Config{
	"str":       "value",
	"bool":      true,
	"float":     2.5,
	"int":       7,
	"int64":     int64(-3),
	"uint8":     uint8(9),
	"float32":   float32(0.5),
	"list":      []string{"a", "b"},
	"anylist":   []any{"c", "d"},
	"badlist":   []any{"c", 1.0},
	"emptylist": []any{},
	"map":       map[string]string{"k": "v"},
	"anymap":    map[string]any{"k2": "v2"},
	"badmap":    map[string]any{"k": true},
}

func TestConfigAccessors(t *testing.T) {
	c := configBlock
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"String", c.String("str"), "value"},
		{"String absent", c.String("nope"), ""},
		{"String of a bool", c.String("bool"), ""},
		{"Bool", c.Bool("bool"), true},
		{"Bool absent", c.Bool("nope"), false},
		{"Bool of a string", c.Bool("str"), false},
		{"Number float64", c.Number("float"), 2.5},
		{"Number int", c.Number("int"), 7.0},
		{"Number int64", c.Number("int64"), -3.0},
		{"Number uint8", c.Number("uint8"), 9.0},
		{"Number float32", c.Number("float32"), 0.5},
		{"Number absent", c.Number("nope"), 0.0},
		{"Number of a string", c.Number("str"), 0.0},
		{"List []string", c.List("list"), []string{"a", "b"}},
		{"List []any", c.List("anylist"), []string{"c", "d"}},
		{"List empty", c.List("emptylist"), []string{}},
		{"List with a number", c.List("badlist"), []string(nil)},
		{"List absent", c.List("nope"), []string(nil)},
		{"List of a string", c.List("str"), []string(nil)},
		{"Map map[string]string", c.Map("map"), map[string]string{"k": "v"}},
		{"Map map[string]any", c.Map("anymap"), map[string]string{"k2": "v2"}},
		{"Map with a bool", c.Map("badmap"), map[string]string(nil)},
		{"Map absent", c.Map("nope"), map[string]string(nil)},
		{"Map of a list", c.Map("list"), map[string]string(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.got); diff != "" {
				t.Errorf("value (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConfigCopies: changing what List or Map returned does not change
// the block (defaults are shared between Configure calls).
func TestConfigCopies(t *testing.T) {
	c := Config{"list": []string{"a"}, "map": map[string]string{"k": "v"}}
	c.List("list")[0] = "changed"
	c.Map("map")["k"] = "changed"
	if got := c.List("list"); got[0] != "a" {
		t.Errorf("List after changing a copy = %q, want [a]", got)
	}
	if got := c.Map("map"); got["k"] != "v" {
		t.Errorf("Map after changing a copy = %q, want map[k:v]", got)
	}
}

// TestConfigAfterHost reads a block the way Configure receives it: checked
// and with the defaults filled in.
func TestConfigAfterHost(t *testing.T) {
	info := testSchema()
	block := map[string]any{"file": "f", "lists": []any{"x"}}
	if errs := info.ValidateConfig(block); errs != nil {
		t.Fatalf("ValidateConfig: %v", errs)
	}
	c := Config(info.ApplyDefaults(block))
	if got := c.Number("limit"); got != 10 {
		t.Errorf("Number(limit) = %v, want the default 10", got)
	}
	if got := c.Bool("strict"); !got {
		t.Errorf("Bool(strict) = %v, want the default true", got)
	}
	if diff := cmp.Diff([]string{"x"}, c.List("lists")); diff != "" {
		t.Errorf("List(lists) (-want +got):\n%s", diff)
	}
}

func TestConfigDuration(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		value   any // nil = absent
		want    time.Duration
		wantErr bool
	}{
		{nil, 0, false},
		{"10s", 10 * time.Second, false},
		{"0s", 0, false},
		{"0", 0, false},
		{"1h30m", 90 * time.Minute, false},
		{"-5m", -5 * time.Minute, false},
		{"7d", 7 * day, false},
		{"+7d", 7 * day, false},
		{"1.5d", 36 * time.Hour, false},
		{"1d12h", 36 * time.Hour, false},
		{"1d12h30m", 36*time.Hour + 30*time.Minute, false},
		{"-2d", -2 * day, false},
		{"0d", 0, false},
		{".5d", 12 * time.Hour, false},
		{"", 0, true},
		{"soon", 0, true},
		{"1 minute", 0, true},
		{"d", 0, true},
		{"1dd", 0, true},
		{"1d-1h", 0, true},
		{"1d+1h", 0, true},
		{"-+1d", 0, true},
		{"1.2.3d", 0, true},
		{"1e3d", 0, true},
		{"x1d", 0, true},
		{"1d1", 0, true},
		{"200000d", 0, true}, // past time.Duration's ~292 years
		{10.0, 0, true},
		{true, 0, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%#v", tt.value), func(t *testing.T) {
			c := Config{}
			if tt.value != nil {
				c["d"] = tt.value
			}
			got, err := c.Duration("d")
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("Duration(%#v) = %v, %v; want %v, error %v", tt.value, got, err, tt.want, tt.wantErr)
			}
			var ce *ConfigError
			if err != nil && (!errors.As(err, &ce) || ce.Field != "d") {
				t.Errorf("Duration(%#v) error = %#v, want a *ConfigError for d", tt.value, err)
			}
		})
	}
}

func TestConfigErrorsBuilder(t *testing.T) {
	var errs ConfigErrors
	if err := errs.Err(); err != nil {
		t.Fatalf("empty Err() = %v, want nil", err)
	}
	errs.Add("url", "want an http:// or https:// URL, got %q", "ftp://x")
	errs.Add("timeout", "must be positive")
	err := errs.Err()
	var got ConfigErrors
	if !errors.As(err, &got) {
		t.Fatalf("Err() = %#v, want ConfigErrors", err)
	}
	want := ConfigErrors{
		{Field: "url", Message: `want an http:// or https:// URL, got "ftp://x"`},
		{Field: "timeout", Message: "must be positive"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if want := `config: url: want an http:// or https:// URL, got "ftp://x" (and more)`; err.Error() != want {
		t.Errorf("Err().Error() = %q, want %q", err.Error(), want)
	}
}
