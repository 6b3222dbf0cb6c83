package sdk

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// forbiddenImports returns the imports of the Go files under dir that reach
// into the gateway's core.
func forbiddenImports(t *testing.T, dir string) []string {
	t.Helper()
	var bad []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			if strings.Contains(imp.Path.Value, "/core/") || strings.HasSuffix(strings.Trim(imp.Path.Value, `"`), "/core") {
				bad = append(bad, path+": "+imp.Path.Value)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return bad
}

// TestNoCoreImports keeps the rule that a plugin author needs only sdk.
func TestNoCoreImports(t *testing.T) {
	if bad := forbiddenImports(t, "."); len(bad) > 0 {
		t.Errorf("sdk imports core packages:\n%s", strings.Join(bad, "\n"))
	}
}

// TestNoCoreImportsFlagsViolation proves the check above can fail.
func TestNoCoreImportsFlagsViolation(t *testing.T) {
	dir := t.TempDir()
	src := "package x\n\nimport _ \"github.com/mailgate/gateway/core/queue\"\n"
	if err := os.WriteFile(filepath.Join(dir, "x.go"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if bad := forbiddenImports(t, dir); len(bad) != 1 {
		t.Fatalf("known-bad fixture: got %v, want one finding", bad)
	}
}
