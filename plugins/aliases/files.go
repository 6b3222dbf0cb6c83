package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/mailgate/gateway/plugins/internal/address"
	"github.com/mailgate/gateway/sdk"
)

// maxIncludeDepth bounds :include: files that include others.
const maxIncludeDepth = 5

// target is one right-hand side of an alias.
type target struct {
	addr     string // local@domain, or "@domain" (virtual: keep the local part, change the domain)
	noExpand bool   // aliases(5) "\name": deliver as is, never expanded further
}

// table is what the files say: the aliases of one load.
type table struct {
	virtual  map[string][]target // lower-case address → targets (virtual(5) address lines)
	aliases  map[string][]target // lower-case local@domain → targets (aliases(5))
	catchAll map[string][]target // lower-case domain → targets (virtual(5) @domain lines)
	files    []stamp             // every file read, includes too, to notice changes
	warnings []string            // entries skipped, with file:line

	// Made by index, for SRS at data:
	targets       map[string]bool // every target address, lower case
	targetDomains map[string]bool // the domains of the "@domain" targets
	keyDomains    map[string]bool // the domains of the addresses with aliases: local by default
}

// index fills in the fields made from the aliases.
func (t *table) index() {
	t.targets, t.targetDomains, t.keyDomains = map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, m := range []map[string][]target{t.virtual, t.aliases} {
		for key, ts := range m {
			_, d, _ := address.Cut(key)
			t.keyDomains[d] = true
			t.indexTargets(ts)
		}
	}
	for d, ts := range t.catchAll {
		t.keyDomains[d] = true
		t.indexTargets(ts)
	}
}

func (t *table) indexTargets(ts []target) {
	for _, tg := range ts {
		if d, ok := strings.CutPrefix(tg.addr, "@"); ok {
			t.targetDomains[d] = true
		} else {
			t.targets[strings.ToLower(tg.addr)] = true
		}
	}
}

// forwardsTo reports whether some alias has the address local@domain
// (domain in lower case) among its targets.
func (t *table) forwardsTo(a sdk.Address, domain string) bool {
	return t.targetDomains[domain] || t.targets[strings.ToLower(a.Local)+"@"+domain]
}

// stamp identifies a version of a file.
type stamp struct {
	path    string
	modTime time.Time
	size    int64
}

// changed reports whether any file differs from its stamp (or is gone).
func changed(stamps []stamp) bool {
	for _, s := range stamps {
		fi, err := os.Stat(s.path)
		if err != nil || !fi.ModTime().Equal(s.modTime) || fi.Size() != s.size {
			return true
		}
	}
	return false
}

// loader reads the files of one table.
type loader struct {
	t      *table
	domain string // config domain: for aliases(5) names and targets without @
}

// load reads the configured files into a new table. An error says which
// setting names the file at fault.
func load(aliasesFile, virtualFile, domain string) (*table, error) {
	t, _, err := loadFiles(aliasesFile, virtualFile, domain)
	return t, err
}

func loadFiles(aliasesFile, virtualFile, domain string) (t *table, field string, err error) {
	l := &loader{
		t: &table{
			virtual:  map[string][]target{},
			aliases:  map[string][]target{},
			catchAll: map[string][]target{},
		},
		domain: domain,
	}
	if aliasesFile != "" {
		data, err := l.read(aliasesFile)
		if err == nil {
			err = l.parseAliases(aliasesFile, data)
		}
		if err != nil {
			return nil, "aliases_file", err
		}
	}
	if virtualFile != "" {
		data, err := l.read(virtualFile)
		if err == nil {
			err = l.parseVirtual(virtualFile, data)
		}
		if err != nil {
			return nil, "virtual_file", err
		}
	}
	l.t.index()
	return l.t, "", nil
}

// read reads a file and records its stamp.
func (l *loader) read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("aliases: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("aliases: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("aliases: %w", err)
	}
	l.t.files = append(l.t.files, stamp{path: path, modTime: fi.ModTime(), size: fi.Size()})
	return data, nil
}

// ErrSyntax is wrapped by every error about the content of a file.
var ErrSyntax = errors.New("syntax error")

func syntaxErr(file string, line int, format string, a ...any) error {
	return fmt.Errorf("aliases: %s:%d: %s: %w", file, line, fmt.Sprintf(format, a...), ErrSyntax)
}

func (l *loader) warn(file string, line int, format string, a ...any) {
	l.t.warnings = append(l.t.warnings, fmt.Sprintf("%s:%d: %s", file, line, fmt.Sprintf(format, a...)))
}

// logicalLine is one entry of a Postfix table file, continuation lines
// joined, with the number of its first line.
type logicalLine struct {
	text string
	line int
}

// logicalLines splits a Postfix table file the way postmap and postalias
// read it: blank lines and lines whose first non-blank character is '#'
// are ignored; a line that starts with white space continues the logical
// line before it. A '#' elsewhere is not a comment.
func logicalLines(file string, data []byte) ([]logicalLine, error) {
	var out []logicalLine
	for i, raw := range strings.Split(string(data), "\n") {
		raw = strings.TrimRight(raw, "\r")
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if raw[0] == ' ' || raw[0] == '\t' {
			if len(out) == 0 {
				return nil, syntaxErr(file, i+1, "continuation line without an entry before it")
			}
			out[len(out)-1].text += " " + trimmed
			continue
		}
		out = append(out, logicalLine{text: trimmed, line: i + 1})
	}
	return out, nil
}

// parseAliases reads an aliases(5) file: `name: value, value, …` where a
// name may be quoted and a value is an address, a name (which gets the
// domain), "\name" (not expanded further) or ":include:/path" (a file of
// more values). "|command" and "/file" values cannot be delivered by a
// gateway: they are skipped with a warning.
func (l *loader) parseAliases(file string, data []byte) error {
	lines, err := logicalLines(file, data)
	if err != nil {
		return err
	}
	first := map[string]int{}
	for _, ll := range lines {
		name, rest, err := splitName(ll.text)
		if err != nil {
			return syntaxErr(file, ll.line, "%v", err)
		}
		if strings.Contains(name, "@") {
			return syntaxErr(file, ll.line, "alias name %q has an @; names are local parts of domain %s", name, l.domain)
		}
		key := strings.ToLower(name) + "@" + l.domain
		if at, dup := first[key]; dup {
			// postalias keeps the first entry and warns about the others.
			l.warn(file, ll.line, "duplicate alias %q ignored (first at line %d)", name, at)
			continue
		}
		first[key] = ll.line
		values, err := splitValues(rest)
		if err != nil {
			return syntaxErr(file, ll.line, "%v", err)
		}
		if len(values) == 0 {
			return syntaxErr(file, ll.line, "alias %q has no targets", name)
		}
		targets, err := l.values(file, ll.line, values, nil)
		if err != nil {
			return err
		}
		if len(targets) == 0 {
			l.warn(file, ll.line, "alias %q has no deliverable targets; ignored", name)
			continue
		}
		l.t.aliases[key] = targets
	}
	return nil
}

// values turns aliases(5) values into targets; includes is the chain of
// :include: files being read, to refuse a file that includes itself.
func (l *loader) values(file string, line int, values []string, includes []string) ([]target, error) {
	var out []target
	for _, v := range values {
		if len(v) >= len(":include:") && strings.EqualFold(v[:len(":include:")], ":include:") {
			path := strings.TrimSpace(v[len(":include:"):])
			if path == "" {
				return nil, syntaxErr(file, line, ":include: without a file name")
			}
			if !filepath.IsAbs(path) {
				path = filepath.Join(filepath.Dir(file), path)
			}
			ts, err := l.include(file, line, path, includes)
			if err != nil {
				return nil, err
			}
			out = append(out, ts...)
			continue
		}
		switch {
		case strings.HasPrefix(v, "|"):
			l.warn(file, line, "command target %q skipped: a gateway cannot run commands", v)
			continue
		case strings.HasPrefix(v, "/"):
			l.warn(file, line, "file target %q skipped: a gateway cannot write files", v)
			continue
		}
		t := target{addr: v}
		if rest, ok := strings.CutPrefix(v, `\`); ok {
			t = target{addr: rest, noExpand: true}
		}
		addr, err := l.address(t.addr)
		if err != nil {
			return nil, syntaxErr(file, line, "%v", err)
		}
		t.addr = addr
		out = append(out, t)
	}
	return out, nil
}

// include reads an :include: file: values separated by commas or lines,
// with comments; it may include more files.
func (l *loader) include(file string, line int, path string, includes []string) ([]target, error) {
	for _, p := range includes {
		if p == path {
			return nil, syntaxErr(file, line, ":include: %s includes itself", path)
		}
	}
	if len(includes) >= maxIncludeDepth {
		return nil, syntaxErr(file, line, ":include: files nested more than %d deep", maxIncludeDepth)
	}
	data, err := l.read(path)
	if err != nil {
		return nil, fmt.Errorf("aliases: %s:%d: :include: %w", file, line, err)
	}
	var out []target
	for i, raw := range strings.Split(string(data), "\n") {
		s := strings.TrimSpace(raw)
		if s == "" || s[0] == '#' {
			continue
		}
		values, err := splitValues(s)
		if err != nil {
			return nil, syntaxErr(path, i+1, "%v", err)
		}
		ts, err := l.values(path, i+1, values, append(includes, path))
		if err != nil {
			return nil, err
		}
		out = append(out, ts...)
	}
	return out, nil
}

// parseVirtual reads a virtual(5) file: `pattern result, result …` where
// the pattern is user@domain, @domain (every address of the domain that
// has no entry of its own) or a bare user name (of the config domain); a
// pattern that is a domain (a virtual alias domain declaration) is
// ignored. Results are separated by commas or white space; a result
// without @ gets the config domain, and "@domain" keeps the local part.
func (l *loader) parseVirtual(file string, data []byte) error {
	lines, err := logicalLines(file, data)
	if err != nil {
		return err
	}
	first := map[string]int{}
	for _, ll := range lines {
		fields := strings.FieldsFunc(ll.text, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
		if len(fields) == 0 {
			return syntaxErr(file, ll.line, "want `pattern target, …`, got %q", ll.text)
		}
		pattern, results := fields[0], fields[1:]
		var table map[string][]target
		var key string
		switch at := strings.LastIndexByte(pattern, '@'); {
		case at == 0:
			table, key = l.t.catchAll, strings.ToLower(pattern[1:])
			if !address.ValidDomain(key) {
				return syntaxErr(file, ll.line, "%q is not @domain", pattern)
			}
		case at > 0:
			addr, err := l.address(pattern)
			if err != nil {
				return syntaxErr(file, ll.line, "%v", err)
			}
			table, key = l.t.virtual, strings.ToLower(addr)
		case strings.Contains(pattern, ".") || len(results) == 0:
			continue // a virtual alias domain: Postfix ignores the result
		default:
			if l.domain == "" {
				return syntaxErr(file, ll.line, "bare user name %q needs the domain setting", pattern)
			}
			table, key = l.t.virtual, strings.ToLower(pattern)+"@"+l.domain
		}
		if len(results) == 0 {
			return syntaxErr(file, ll.line, "%q has no targets", pattern)
		}
		if at, dup := first[key]; dup {
			l.warn(file, ll.line, "duplicate entry %q ignored (first at line %d)", pattern, at)
			continue
		}
		first[key] = ll.line
		var targets []target
		for _, r := range results {
			if d, ok := strings.CutPrefix(r, "@"); ok {
				if !address.ValidDomain(d) {
					return syntaxErr(file, ll.line, "%q is not @domain", r)
				}
				targets = append(targets, target{addr: "@" + strings.ToLower(d)})
				continue
			}
			addr, err := l.address(r)
			if err != nil {
				return syntaxErr(file, ll.line, "%v", err)
			}
			targets = append(targets, target{addr: addr})
		}
		table[key] = targets
	}
	return nil
}

// address checks a target and gives a bare name the config domain.
func (l *loader) address(s string) (string, error) {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		if l.domain == "" {
			return "", fmt.Errorf("%q has no domain and the domain setting is empty", s)
		}
		s, at = s+"@"+l.domain, len(s)
	}
	local, domain := s[:at], s[at+1:]
	if local == "" || !address.ValidDomain(strings.ToLower(domain)) || strings.ContainsFunc(local, badLocal) {
		return "", fmt.Errorf("%q is not an address", s)
	}
	return local + "@" + strings.ToLower(domain), nil
}

func badLocal(r rune) bool {
	return r < ' ' || r == 0x7f || r == ' ' || r == ',' || r == '<' || r == '>'
}

// splitName splits `name: rest`; the name may be quoted ("a b": …).
func splitName(s string) (name, rest string, err error) {
	if strings.HasPrefix(s, `"`) {
		name, n, err := unquote(s)
		if err != nil {
			return "", "", err
		}
		rest = strings.TrimLeft(s[n:], " \t")
		if !strings.HasPrefix(rest, ":") {
			return "", "", fmt.Errorf("want ':' after the name %q", name)
		}
		if name == "" {
			return "", "", errors.New("empty alias name")
		}
		return name, rest[1:], nil
	}
	name, rest, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", fmt.Errorf("want `name: target, …`, got %q", s)
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return "", "", errors.New("empty alias name")
	}
	if strings.ContainsFunc(name, unicode.IsSpace) {
		return "", "", fmt.Errorf("alias name %q has white space; quote it", name)
	}
	return name, rest, nil
}

// splitValues splits a comma-separated list whose elements may be quoted;
// quotes are removed. Empty elements are dropped.
func splitValues(s string) ([]string, error) {
	var out []string
	for s = strings.TrimSpace(s); s != ""; {
		var v string
		if s[0] == '"' {
			q, n, err := unquote(s)
			if err != nil {
				return nil, err
			}
			v, s = q, strings.TrimLeft(s[n:], " \t")
			// A quoted local part may be followed by @domain.
			if strings.HasPrefix(s, "@") {
				end := strings.IndexByte(s, ',')
				if end < 0 {
					end = len(s)
				}
				v, s = v+strings.TrimSpace(s[:end]), s[end:]
			}
			if s != "" && s[0] != ',' {
				return nil, fmt.Errorf("want ',' after %q", q)
			}
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			v, s = strings.TrimSpace(s[:end]), s[end:]
		}
		if v != "" {
			out = append(out, v)
		}
		s = strings.TrimSpace(strings.TrimPrefix(s, ","))
	}
	return out, nil
}

// unquote reads the quoted string at the start of s ("…" with \
// escapes), returning its content and the bytes it took.
func unquote(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), i + 1, nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", 0, fmt.Errorf("unterminated quote in %s", s)
}
