package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPluginFromScratchProbe checks that what examples/plugin-from-scratch's
// README.md shows `gateway plugin probe` printing is what it prints for the
// example's plugin, built from its own module.
func TestPluginFromScratchProbe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts a plugin")
	}
	example := filepath.Join("..", "..", "examples", "plugin-from-scratch")
	bin := filepath.Join(t.TempDir(), "gateway-plugin-greylist")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(example, "greylist")
	// The plugin's module is not the gateway's: build it with its own
	// go.mod and go.sum whatever the environment says.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build the greylist plugin: %v\n%s", err, out)
	}
	code, out, errOut := runCLI(t, "plugin", "probe", bin)
	if code != 0 {
		t.Fatalf("gateway plugin probe: code %d, stderr %s", code, errOut)
	}
	readme, err := os.ReadFile(filepath.Join(example, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), out) {
		t.Errorf("README.md does not show the output of gateway plugin probe:\n%s", out)
	}
}
