// Package repotest holds tests of the repository's own rules, those a
// reviewer would otherwise have to remember.
package repotest

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var (
	fuzzFunc   = regexp.MustCompile(`(?m)^func (Fuzz\w+)\(\w+ \*testing\.F\)`)
	fuzzTarget = regexp.MustCompile(`^\s*(\./[\w/.-]+):(Fuzz\w+)`)
)

// fuzzTargets returns every native fuzz target under root as
// "./pkg:FuzzName".
func fuzzTargets(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return err
		}
		if strings.Contains(path, string(filepath.Separator)+"testdata"+string(filepath.Separator)) {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		for _, m := range fuzzFunc.FindAllStringSubmatch(string(src), -1) {
			out = append(out, "./"+filepath.ToSlash(rel)+":"+m[1])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// makeTargets returns the FUZZ_TARGETS entries of a Makefile.
func makeTargets(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if m := fuzzTarget.FindStringSubmatch(sc.Text()); m != nil {
			out = append(out, m[1]+":"+m[2])
		}
	}
	return out
}

// missing returns the targets of want that got lacks.
func missing(want, got []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			out = append(out, w)
		}
	}
	return out
}

// TestMakefileFuzzesEveryTarget: `make fuzz` (and so `make test`) runs
// every native fuzz target of the repository, and names none that is gone.
func TestMakefileFuzzesEveryTarget(t *testing.T) {
	inTree := fuzzTargets(t, "../..")
	inMake := makeTargets(t, "../../Makefile")
	if m := missing(inTree, inMake); len(m) > 0 {
		t.Errorf("the Makefile's FUZZ_TARGETS lacks %v", m)
	}
	if m := missing(inMake, inTree); len(m) > 0 {
		t.Errorf("the Makefile's FUZZ_TARGETS names %v, which the tree does not have", m)
	}
}

// TestMakefileCheckFlagsBad: the check above fails on a Makefile that
// lacks a target and names a stale one (a meta-test must be able to fail).
func TestMakefileCheckFlagsBad(t *testing.T) {
	inTree := fuzzTargets(t, "../..")
	bad := makeTargets(t, "testdata/bad_Makefile")
	if m := missing(inTree, bad); !slices.Contains(m, "./core/smtp:FuzzParseMail") {
		t.Errorf("missing(tree, bad_Makefile) = %v; want it to name ./core/smtp:FuzzParseMail", m)
	}
	if m := missing(bad, inTree); !slices.Equal(m, []string{"./core/smtp:FuzzHopCounter"}) {
		t.Errorf("missing(bad_Makefile, tree) = %v; want the stale ./core/smtp:FuzzHopCounter", m)
	}
}
