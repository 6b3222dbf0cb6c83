package config

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// docExample is one example of the documentation as a whole config file:
// the root gateway.hcl with one paragraph's commented example uncommented
// in place, or one ```hcl snippet of README.md with what it needs around
// it. Its lines keep their numbers in the file it comes from, so the
// loader's diagnostics point at them.
type docExample struct {
	name string // file:line of the example's first line
	src  string
}

// exampleStart matches the first line of a commented example: an
// attribute or a block, as opposed to prose.
var exampleStart = regexp.MustCompile(`^[a-z_][a-z0-9_]*\s*(=|\{|"[^"]*"\s*\{)`)

// commentedExamples returns, for every paragraph of comment lines in src
// that holds an example, src with that paragraph's example lines
// uncommented: lines that start an attribute or a block, and every line of
// a block they open. Prose lines of the paragraph stay comments.
func commentedExamples(file, src string) []docExample {
	lines := strings.SplitAfter(src, "\n")
	var out []docExample
	for start := 0; start < len(lines); {
		end := start
		for end < len(lines) && isComment(lines[end]) {
			end++
		}
		if end == start {
			start++
			continue
		}
		if ex, first, ok := uncommentParagraph(lines, start, end); ok {
			out = append(out, docExample{name: file + ":" + strconv.Itoa(first+1), src: ex})
		}
		start = end
	}
	return out
}

func isComment(line string) bool {
	return strings.HasPrefix(strings.TrimSpace(line), "#")
}

// uncommentParagraph returns the file with the example lines of
// lines[start:end] uncommented, and the index of the first one.
func uncommentParagraph(lines []string, start, end int) (src string, first int, ok bool) {
	out := append([]string(nil), lines...)
	depth := 0
	first = -1
	for i := start; i < end; i++ {
		indent, body, _ := strings.Cut(lines[i], "#")
		body = strings.TrimPrefix(body, " ")
		if depth == 0 && !exampleStart.MatchString(body) {
			continue
		}
		if first < 0 {
			first = i
		}
		out[i] = indent + body
		depth += braceDepth(body)
	}
	return strings.Join(out, ""), first, first >= 0
}

// braceDepth returns how many blocks or objects line opens (or, when
// negative, closes): its braces outside strings and comments.
func braceDepth(line string) int {
	n, quoted := 0, false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '#':
			return n
		case c == '{':
			n++
		case c == '}':
			n--
		}
	}
	return n
}

// listenerBlock matches a snippet that has its own listener.
var listenerBlock = regexp.MustCompile(`(?m)^\s*listener\s+"`)

// hclSnippets returns every ```hcl snippet of the Markdown src, after as
// many empty lines as keep its lines' numbers in src; a snippet without a
// listener block gets one after its last line, since a config needs one.
func hclSnippets(file, src string) []docExample {
	var out []docExample
	var cur *strings.Builder
	first := 0
	for i, line := range strings.Split(src, "\n") {
		switch trimmed := strings.TrimSpace(line); {
		case cur == nil && trimmed == "```hcl":
			cur, first = &strings.Builder{}, i+2
			cur.WriteString(strings.Repeat("\n", i+1))
		case cur != nil && trimmed == "```":
			s := cur.String()
			if !listenerBlock.MatchString(s) {
				s += "listener \"snippet\" { address = \"127.0.0.1:0\" }\n"
			}
			out = append(out, docExample{name: file + ":" + strconv.Itoa(first), src: s})
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	return out
}

// exampleDir returns a folder to load examples in, with the files they
// name: the repository's scripts/, a stand-in bin/gateway-plugin-<name>
// for each shipped plugin (the loader only checks that it can run; a
// path to a plugin that is not shipped finds nothing), a TLS certificate
// and key, and an injection token. It also returns the stand-ins' SHA-256.
func exampleDir(t *testing.T, root string) (dir, sum string) {
	t.Helper()
	dir = t.TempDir()
	scripts, err := filepath.Abs(filepath.Join(root, "scripts"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(scripts, filepath.Join(dir, "scripts")); err != nil {
		t.Fatal(err)
	}
	plugins, err := filepath.Glob(filepath.Join(root, "plugins", "*", "main.go"))
	if err != nil || len(plugins) == 0 {
		t.Fatalf("no shipped plugins under %s: %v", root, err)
	}
	stub := []byte("#!/bin/sh\nexit 1\n")
	digest := sha256.Sum256(stub)
	files := map[string][]byte{
		"inject.token":   []byte("0123456789abcdef0123456789abcdef\n"),
		"smarthost.pass": []byte("s3cret\n"),
		"cert.pem":       mustRead(t, filepath.Join("testdata", "tls", "cert.pem")),
		"key.pem":        mustRead(t, filepath.Join("testdata", "tls", "key.pem")),
		"ecdsa-cert.pem": mustRead(t, filepath.Join("testdata", "tls", "cert.pem")),
		"ecdsa-key.pem":  mustRead(t, filepath.Join("testdata", "tls", "key.pem")),
		"ca.pem":         mustRead(t, filepath.Join("testdata", "tls", "cert.pem")),
		filepath.Join("dkim", "example.test.s1.pem"): mustRead(t, filepath.Join("testdata", "dkim", "rsa1024_pkcs1.pem")),
	}
	for _, p := range plugins {
		files[filepath.Join("bin", "gateway-plugin-"+filepath.Base(filepath.Dir(p)))] = stub
	}
	for name, b := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return dir, hex.EncodeToString(digest[:])
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// placeholderSHA256 is a sha256 setting an example leaves to the reader.
var placeholderSHA256 = regexp.MustCompile(`(sha256\s*=\s*)"…"`)

// loadExamples loads every example in dir (from exampleDir) and returns
// the error of each that does not load, by name.
func loadExamples(dir, sum string, examples []docExample) map[string]error {
	failed := map[string]error{}
	for _, ex := range examples {
		src := placeholderSHA256.ReplaceAllString(ex.src, `${1}"`+sum+`"`)
		if _, err := Parse([]byte(src), filepath.Join(dir, "gateway.hcl")); err != nil {
			failed[ex.name] = err
		}
	}
	return failed
}

// TestDocExamples uncomments every commented example of the root
// gateway.hcl and loads it, and loads every ```hcl snippet of README.md
// and DESIGN.md, so that what a newcomer copies from the docs is a config
// that loads.
func TestDocExamples(t *testing.T) {
	root := filepath.Join("..", "..")
	var examples []docExample
	for _, f := range []struct {
		name    string
		extract func(file, src string) []docExample
	}{{"gateway.hcl", commentedExamples}, {"README.md", hclSnippets}, {"DESIGN.md", hclSnippets}} {
		found := f.extract(f.name, string(mustRead(t, filepath.Join(root, f.name))))
		if len(found) == 0 {
			t.Fatalf("%s: no examples found; the test would check nothing", f.name)
		}
		examples = append(examples, found...)
	}
	dir, sum := exampleDir(t, root)
	failed := loadExamples(dir, sum, examples)
	for _, ex := range examples {
		if err := failed[ex.name]; err != nil {
			t.Errorf("%s: the example does not load (if that line is prose, reword it so that it does not start like a setting): %v",
				ex.name, err)
		}
	}
	t.Logf("%d examples loaded", len(examples))
}

// TestDocExamplesFlagBad proves the check above can fail: the fixtures
// each hold one example that loads and one that does not.
func TestDocExamplesFlagBad(t *testing.T) {
	dir, sum := exampleDir(t, filepath.Join("..", ".."))
	for _, f := range []struct {
		name    string
		extract func(file, src string) []docExample
		bad     string
	}{
		{"bad_gateway.hcl", commentedExamples, "bad_gateway.hcl:9"},
		{"bad_readme.md", hclSnippets, "bad_readme.md:12"},
	} {
		examples := f.extract(f.name, string(mustRead(t, filepath.Join("testdata", "docs", f.name))))
		if len(examples) != 2 {
			t.Errorf("%s: found %d examples, want 2", f.name, len(examples))
		}
		failed := loadExamples(dir, sum, examples)
		if _, ok := failed[f.bad]; !ok || len(failed) != 1 {
			t.Errorf("%s: failed %v; want only %s", f.name, failed, f.bad)
		}
	}
}
