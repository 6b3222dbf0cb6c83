package proto

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedUpToDate regenerates the Go code into a temporary directory
// and compares it with sdk/internal/pb, so the committed code cannot drift
// from plugin.proto. It needs protoc, protoc-gen-go and protoc-gen-go-grpc
// on PATH (sdk/README.md); without them it skips.
func TestGeneratedUpToDate(t *testing.T) {
	for _, tool := range []string{"protoc", "protoc-gen-go", "protoc-gen-go-grpc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not on PATH", tool)
		}
	}
	out := t.TempDir()
	const module = "github.com/mailgate/gateway/sdk"
	cmd := exec.Command("protoc", "-I", ".",
		"--go_out="+out, "--go_opt=module="+module,
		"--go-grpc_out="+out, "--go-grpc_opt=module="+module,
		"gateway/v1/plugin.proto")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	for _, name := range []string{"plugin.pb.go", "plugin_grpc.pb.go"} {
		want, err := os.ReadFile(filepath.Join(out, "internal", "pb", name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("..", "internal", "pb", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("sdk/internal/pb/%s is stale: run go generate ./sdk/proto (sdk/README.md)", name)
		}
	}
}
