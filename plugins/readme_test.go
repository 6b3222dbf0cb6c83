package plugins

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/mailgate/gateway/sdk"
)

// requiredSections are the sections of every plugin README, in order
// (STYLE.md rule 6). Other "##" sections may come between them.
var requiredSections = []string{"Description", "Configuration", "Examples", "Metrics", "Stages"}

// configHeader is the header row of the Configuration table.
var configHeader = []string{"setting", "type", "default", "description"}

// section is a "#" or "##" heading and the lines under it.
type section struct {
	title string
	level int
	line  int      // of the heading, 1-based
	body  []string // the lines up to the next heading
}

// sections splits a README at its "#" and "##" headings, outside fenced
// code blocks.
func sections(src string) []section {
	var out []section
	fenced := false
	for i, line := range strings.Split(src, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if !fenced {
			if t, ok := strings.CutPrefix(line, "## "); ok {
				out = append(out, section{title: strings.TrimSpace(t), level: 2, line: i + 1})
				continue
			}
			if t, ok := strings.CutPrefix(line, "# "); ok {
				out = append(out, section{title: strings.TrimSpace(t), level: 1, line: i + 1})
				continue
			}
		}
		if len(out) > 0 {
			out[len(out)-1].body = append(out[len(out)-1].body, line)
		}
	}
	return out
}

// tableRow is one row of the Configuration table.
type tableRow struct {
	cells []string
	line  int
}

// configTable returns the rows of the first table in s whose header is
// configHeader, or ok = false.
func configTable(s section) (rows []tableRow, ok bool) {
	in := false
	for i, line := range s.body {
		cells, isRow := splitRow(line)
		switch {
		case !in && isRow && slices.Equal(lower(cells), configHeader):
			in, ok = true, true
		case in && isRow && strings.Trim(strings.Join(cells, ""), "-: ") == "":
			// the delimiter row
		case in && isRow:
			rows = append(rows, tableRow{cells: cells, line: s.line + 1 + i})
		case in:
			return rows, ok
		}
	}
	return rows, ok
}

func splitRow(line string) ([]string, bool) {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "|") || !strings.HasSuffix(line, "|") || len(line) < 2 {
		return nil, false
	}
	var cells []string
	for c := range strings.SplitSeq(line[1:len(line)-1], "|") {
		cells = append(cells, strings.TrimSpace(c))
	}
	return cells, true
}

func lower(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = strings.ToLower(v)
	}
	return out
}

// hclBlock is a fenced hcl block and the line its content starts on.
type hclBlock struct {
	src  string
	line int
}

func hclBlocks(s section) []hclBlock {
	var out []hclBlock
	var cur *hclBlock
	for i, line := range s.body {
		switch {
		case cur == nil && strings.TrimSpace(line) == "```hcl":
			cur = &hclBlock{line: s.line + 2 + i}
		case cur != nil && strings.TrimSpace(line) == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.src += line + "\n"
		}
	}
	return out
}

// wantDefault is how the Configuration table writes a field's default.
func wantDefault(f sdk.ConfigField) string {
	switch d := f.Default.(type) {
	case nil:
		if f.Required {
			return "required"
		}
		return "none"
	case string:
		return fmt.Sprintf("`%q`", d)
	case []any:
		if len(d) == 0 {
			return "`[]`"
		}
	case map[string]any:
		if len(d) == 0 {
			return "`{}`"
		}
	}
	b, _ := json.Marshal(f.Default)
	return "`" + string(b) + "`"
}

// checkREADME returns what is wrong with the README of plugin name, as
// "file:line: problem" findings, given the plugin's schema.
func checkREADME(path, name string, src []byte, schema []sdk.ConfigField) []string {
	var findings []string
	bad := func(line int, format string, a ...any) {
		findings = append(findings, fmt.Sprintf("%s:%d: %s", path, line, fmt.Sprintf(format, a...)))
	}
	secs := sections(string(src))
	if len(secs) == 0 || secs[0].level != 1 || secs[0].title != name {
		bad(1, "want the title %q first", "# "+name)
	}
	byTitle := map[string]section{}
	next := 0 // index in requiredSections of the next section expected
	for _, s := range secs {
		if s.level == 1 {
			if s.line != 1 || s.title != name {
				bad(s.line, "a second title %q", s.title)
			}
			continue
		}
		byTitle[s.title] = s
		if i := slices.Index(requiredSections, s.title); i >= 0 {
			if i < next {
				bad(s.line, "section %q out of order: want %s", s.title, strings.Join(requiredSections, ", "))
			}
			next = max(next, i+1)
		}
	}
	for _, title := range requiredSections {
		if _, ok := byTitle[title]; !ok {
			bad(1, "missing section %q", "## "+title)
		}
	}
	fields := map[string]sdk.ConfigField{}
	for _, f := range schema {
		fields[f.Name] = f
	}

	if s, ok := byTitle["Configuration"]; ok {
		rows, ok := configTable(s)
		if !ok {
			bad(s.line, "no table with the columns %s", strings.Join(configHeader, ", "))
		}
		listed := map[string]bool{}
		for _, r := range rows {
			if len(r.cells) != len(configHeader) {
				bad(r.line, "want %d cells, got %d", len(configHeader), len(r.cells))
				continue
			}
			setting := strings.Trim(r.cells[0], "`")
			listed[setting] = true
			f, ok := fields[setting]
			if !ok {
				bad(r.line, "setting %q is not in the schema", setting)
				continue
			}
			if r.cells[1] != f.Type {
				bad(r.line, "setting %q: type %q, the schema says %q", setting, r.cells[1], f.Type)
			}
			if want := wantDefault(f); r.cells[2] != want {
				bad(r.line, "setting %q: default %s, the schema says %s", setting, r.cells[2], want)
			}
			if r.cells[3] == "" {
				bad(r.line, "setting %q has no description", setting)
			}
		}
		for _, f := range schema {
			if !listed[f.Name] {
				bad(s.line, "setting %q of the schema is not in the table", f.Name)
			}
		}
	}

	if s, ok := byTitle["Examples"]; ok {
		blocks := hclBlocks(s)
		if len(blocks) == 0 {
			bad(s.line, "no ```hcl example")
		}
		for _, b := range blocks {
			for _, p := range checkExample(b, name, fields) {
				bad(p.line, "%s", p.msg)
			}
		}
	}
	return findings
}

type problem struct {
	line int
	msg  string
}

// checkExample parses one hcl example: a complete plugin "<name>" block
// whose config block sets only schema fields, with values of their types,
// and every required one.
func checkExample(b hclBlock, name string, fields map[string]sdk.ConfigField) []problem {
	var out []problem
	at := func(r hcl.Range) int { return b.line + r.Start.Line - 1 }
	f, diags := hclparse.NewParser().ParseHCL([]byte(b.src), "example.hcl")
	if diags.HasErrors() {
		line := b.line
		if len(diags) > 0 && diags[0].Subject != nil {
			line = at(*diags[0].Subject)
		}
		return []problem{{line, "example does not parse: " + diags.Error()}}
	}
	body := f.Body.(*hclsyntax.Body)
	var plugins []*hclsyntax.Block
	for _, blk := range body.Blocks {
		if blk.Type == "plugin" {
			plugins = append(plugins, blk)
		}
	}
	if len(plugins) == 0 {
		return []problem{{b.line, fmt.Sprintf("example has no plugin %q block", name)}}
	}
	for _, p := range plugins {
		if len(p.Labels) != 1 || p.Labels[0] != name {
			out = append(out, problem{at(p.TypeRange), fmt.Sprintf("plugin block labelled %q, want %q", p.Labels, name)})
			continue
		}
		var configs []*hclsyntax.Block
		for _, inner := range p.Body.Blocks {
			if inner.Type == "config" {
				configs = append(configs, inner)
			}
		}
		if len(configs) != 1 {
			out = append(out, problem{at(p.TypeRange), fmt.Sprintf("plugin block has %d config blocks, want 1", len(configs))})
			continue
		}
		cfg := configs[0].Body
		for _, attrName := range sortedAttrs(cfg.Attributes) {
			attr := cfg.Attributes[attrName]
			field, ok := fields[attrName]
			if !ok {
				out = append(out, problem{at(attr.NameRange), fmt.Sprintf("config key %q is not in the schema", attrName)})
				continue
			}
			v, diags := attr.Expr.Value(nil)
			if diags.HasErrors() {
				out = append(out, problem{at(attr.NameRange), fmt.Sprintf("config key %q: %s", attrName, diags.Error())})
				continue
			}
			if !ctyHasType(v, field.Type) {
				out = append(out, problem{at(attr.NameRange), fmt.Sprintf("config key %q: a %s, the schema says %s", attrName, v.Type().FriendlyName(), field.Type)})
			}
		}
		for _, fname := range sortedFields(fields) {
			if _, set := cfg.Attributes[fname]; fields[fname].Required && !set {
				out = append(out, problem{at(configs[0].TypeRange), fmt.Sprintf("config block lacks the required %q", fname)})
			}
		}
	}
	return out
}

func ctyHasType(v cty.Value, typ string) bool {
	t := v.Type()
	elems := func(want cty.Type) bool {
		if !(t.IsTupleType() || t.IsListType() || t.IsObjectType() || t.IsMapType()) {
			return false
		}
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if !e.Type().Equals(want) {
				return false
			}
		}
		return true
	}
	switch typ {
	case sdk.TypeString:
		return t == cty.String
	case sdk.TypeNumber:
		return t == cty.Number
	case sdk.TypeBool:
		return t == cty.Bool
	case sdk.TypeList:
		return (t.IsTupleType() || t.IsListType()) && elems(cty.String)
	case sdk.TypeMap:
		return (t.IsObjectType() || t.IsMapType()) && elems(cty.String)
	}
	return false
}

func sortedAttrs(m hclsyntax.Attributes) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sortedFields(m map[string]sdk.ConfigField) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// pluginDirs lists the plugin folders: those with a main.go.
func pluginDirs(t *testing.T) []string {
	t.Helper()
	mains, err := filepath.Glob(filepath.Join("*", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, m := range mains {
		dirs = append(dirs, filepath.Dir(m))
	}
	if len(dirs) == 0 {
		t.Fatal("no plugin folders found")
	}
	return dirs
}

// readSchema reads a plugin's testdata/schema.json, which its own test
// keeps equal to Info().Schema.
func readSchema(t *testing.T, dir string) []sdk.ConfigField {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "testdata", "schema.json"))
	if err != nil {
		t.Fatalf("%v (go test ./plugins/%s -update writes it)", err, dir)
	}
	var schema []sdk.ConfigField
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatalf("%s/testdata/schema.json: %v", dir, err)
	}
	return schema
}

func TestREADMEs(t *testing.T) {
	for _, dir := range pluginDirs(t) {
		t.Run(dir, func(t *testing.T) {
			path := filepath.Join(dir, "README.md")
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range checkREADME(path, dir, src, readSchema(t, dir)) {
				t.Error(f)
			}
		})
	}
}

// TestFolderLayout: every plugin folder has the same files (STYLE.md rule
// 6), and main.go is only sdk.Serve(New()).
func TestFolderLayout(t *testing.T) {
	for _, dir := range pluginDirs(t) {
		t.Run(dir, func(t *testing.T) {
			for _, f := range []string{"main.go", dir + ".go", "config.go", dir + "_test.go", "README.md", "testdata/schema.json"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("missing %s/%s", dir, f)
				}
			}
			src, err := os.ReadFile(filepath.Join(dir, "main.go"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(src), "func main() { sdk.Serve(New()) }") {
				t.Errorf("%s/main.go: want func main() { sdk.Serve(New()) }", dir)
			}
		})
	}
}

// TestCheckerFlagsBadREADME: the checker must find the faults planted in
// testdata/bad_readme.md, so that TestREADMEs cannot pass by checking
// nothing.
func TestCheckerFlagsBadREADME(t *testing.T) {
	path := filepath.Join("testdata", "bad_readme.md")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	schema := []sdk.ConfigField{
		{Name: "url", Type: "string", Required: true},
		{Name: "timeout", Type: "string", Default: "10s"},
		{Name: "retries", Type: "number", Default: float64(3)},
		{Name: "tags", Type: "list(string)"},
	}
	want := []string{
		`testdata/bad_readme.md:35: section "Description" out of order: want Description, Configuration, Examples, Metrics, Stages`,
		`testdata/bad_readme.md:1: missing section "## Metrics"`,
		`testdata/bad_readme.md:12: setting "timeout": default ` + "`\"5s\"`" + `, the schema says ` + "`\"10s\"`",
		`testdata/bad_readme.md:13: setting "retry" is not in the schema`,
		`testdata/bad_readme.md:7: setting "retries" of the schema is not in the table`,
		`testdata/bad_readme.md:7: setting "tags" of the schema is not in the table`,
		`testdata/bad_readme.md:21: config key "retries": a string, the schema says number`,
		`testdata/bad_readme.md:22: config key "verbose" is not in the schema`,
		`testdata/bad_readme.md:20: config block lacks the required "url"`,
		`testdata/bad_readme.md:28: example does not parse: example.hcl:1,18-2,1: Invalid block definition; ` +
			`A block definition must have block content delimited by "{" and "}", starting on the same line as the block header.`,
	}
	got := checkREADME(path, "bad", src, schema)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
}
