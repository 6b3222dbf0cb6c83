package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestParams checks the Go types params values become, which the JSON of
// the goldens cannot show (1 and 1.0 print alike).
func TestParams(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "s.lua"), []byte("return nil\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := `listener "mx" { address = "127.0.0.1:0" }
lua "s" {
  path   = "s.lua"
  params = {
    s     = "text"
    i     = 42
    whole = 2.0
    neg   = -3
    f     = 0.5
    huge  = 1e30
    b     = false
    n     = null
    list  = [1, "a", true]
    obj   = { k = [] }
  }
}
`
	cfg, err := Parse([]byte(src), filepath.Join(dir, "gateway.hcl"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := map[string]any{
		"s":     "text",
		"i":     int64(42),
		"whole": int64(2),
		"neg":   int64(-3),
		"f":     0.5,
		"huge":  1e30,
		"b":     false,
		"list":  []any{int64(1), "a", true},
		"obj":   map[string]any{"k": []any{}},
	}
	h := cfg.Lua[0]
	if diff := cmp.Diff(want, h.Params); diff != "" {
		t.Errorf("params (-want +got):\n%s", diff)
	}
	if _, ok := h.Params["n"]; ok {
		t.Errorf("params: a null attribute is kept; want it left out")
	}
	if h.Timeout != time.Second || h.OnError != "defer" || !h.Match.IsZero() {
		t.Errorf("defaults: got timeout %v, on_error %q, match %+v; want 1s, defer, zero", h.Timeout, h.OnError, h.Match)
	}
	if got, want := cfg.Pipeline, []string{"lua.s"}; !cmp.Equal(got, want) {
		t.Errorf("pipeline: got %q, want %q", got, want)
	}
}

// TestPluginConfig checks the Go types of a plugin's config block (the
// goldens' JSON cannot tell 1 from 1.0), the line of each setting, and
// the defaults of a plugin block.
func TestPluginConfig(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "gateway-plugin-x")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 1\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	src := `listener "mx" { address = "127.0.0.1:0" }
plugin "x" {
  path = "gateway-plugin-x"
  config {
    s    = "text"
    i    = 42
    f    = 0.5
    b    = true
    list = ["a", "b"]
    map  = { k = "v" }
    n    = null
  }
}
`
	cfg, err := Parse([]byte(src), filepath.Join(dir, "gateway.hcl"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	h := cfg.Plugins[0]
	want := map[string]any{
		"s":    "text",
		"i":    int64(42),
		"f":    0.5,
		"b":    true,
		"list": []any{"a", "b"},
		"map":  map[string]any{"k": "v"},
	}
	if diff := cmp.Diff(want, h.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	wantLines := map[string]int{"s": 5, "i": 6, "f": 7, "b": 8, "list": 9, "map": 10}
	if diff := cmp.Diff(wantLines, h.ConfigLines); diff != "" {
		t.Errorf("config lines (-want +got):\n%s", diff)
	}
	if got, want := h.ConfigRange, (Range{Filename: filepath.Join(dir, "gateway.hcl"), Line: 4}); got != want {
		t.Errorf("ConfigRange: got %v, want %v", got, want)
	}
	if h.Path != bin || h.Timeout != 2*time.Second || h.OnError != "defer" || h.SHA256 != "" || !h.Match.IsZero() {
		t.Errorf("defaults: got %+v; want path %s, timeout 2s, on_error defer, no sha256, zero match", h, bin)
	}
	if got, want := cfg.Pipeline, []string{"plugin.x"}; !cmp.Equal(got, want) {
		t.Errorf("pipeline: got %q, want %q", got, want)
	}
	if got, want := h.PipelineName(), "plugin.x"; got != want {
		t.Errorf("PipelineName: got %q, want %q", got, want)
	}
}
