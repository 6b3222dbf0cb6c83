package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mailgate/gateway/plugins/internal/address"
)

// list is one mailing list.
type list struct {
	addr        string   // the list address, domain in lower case
	name        string   // "# name:", the phrase of List-Id; may be ""
	id          string   // List-Id label, without <>
	owner       string   // "" when none
	posters     string   // PostersMembers, PostersAnyone or PostersModerated
	unsubscribe string   // List-Unsubscribe target without <>; "" = no field
	bounce      string   // the envelope sender of the list's messages
	members     []string // in file order, without duplicates
	isMember    map[string]bool
	source      string // where the list was defined, for messages
}

// set is the lists of one load.
type set struct {
	byAddr map[string]*list // lower-case address → list
	files  []stamp          // lists_dir and its list files
}

// stamp identifies a version of a file or folder.
type stamp struct {
	path    string
	modTime time.Time
	size    int64
}

func changed(stamps []stamp) bool {
	for _, s := range stamps {
		fi, err := os.Stat(s.path)
		if err != nil || !fi.ModTime().Equal(s.modTime) || fi.Size() != s.size {
			return true
		}
	}
	return false
}

// ErrSyntax is wrapped by every error about the content of a list file.
var ErrSyntax = errors.New("syntax error")

func syntaxErr(file string, line int, format string, a ...any) error {
	return fmt.Errorf("lists: %s:%d: %s: %w", file, line, fmt.Sprintf(format, a...), ErrSyntax)
}

// load reads the lists of c: the files of c.dir, then c.inline. It
// returns the setting at fault with an error.
func load(c config) (*set, string, error) {
	s := &set{byAddr: map[string]*list{}}
	if c.dir != "" {
		if err := s.readDir(c); err != nil {
			return nil, "lists_dir", err
		}
	}
	for _, addr := range sortedKeys(c.inline) {
		l, err := newList(c, "lists", addr)
		if err != nil {
			return nil, "lists", err
		}
		for _, m := range strings.Split(c.inline[addr], ",") {
			if m = strings.TrimSpace(m); m == "" {
				continue
			}
			if err := l.add(c, m); err != nil {
				return nil, "lists", fmt.Errorf("lists: lists[%q]: %w", addr, err)
			}
		}
		if err := s.put(c, l); err != nil {
			return nil, "lists", err
		}
	}
	return s, "", nil
}

// newList starts a list at addr with the config's defaults.
func newList(c config, source, addr string) (*list, error) {
	a, err := checkAddress(c, addr)
	if err != nil {
		return nil, fmt.Errorf("lists: %s: list address: %w", source, err)
	}
	return &list{addr: a, posters: c.policy, isMember: map[string]bool{}, source: source}, nil
}

// add adds a member.
func (l *list) add(c config, m string) error {
	a, err := checkAddress(c, m)
	if err != nil {
		return err
	}
	if k := strings.ToLower(a); !l.isMember[k] {
		l.isMember[k] = true
		l.members = append(l.members, a)
	}
	return nil
}

// put checks l, fills in its derived settings and adds it to the set.
func (s *set) put(c config, l *list) error {
	key := strings.ToLower(l.addr)
	if other, dup := s.byAddr[key]; dup {
		return fmt.Errorf("lists: %s: list %s is already defined in %s", l.source, l.addr, other.source)
	}
	if l.posters == PostersModerated && l.owner == "" {
		return fmt.Errorf("lists: %s: list %s is moderated but has no owner", l.source, l.addr)
	}
	local, domain, _ := address.Cut(l.addr)
	if l.id == "" {
		l.id = strings.ToLower(local) + "." + domain
	}
	if l.bounce == "" {
		l.bounce = l.owner
	}
	if l.bounce == "" {
		l.bounce = local + "-bounces@" + domain
	}
	s.byAddr[key] = l
	return nil
}

// readDir reads the list files of c.dir: files named <list>@<domain> or
// <list>.list; other files are ignored.
func (s *set) readDir(c config) error {
	fi, err := os.Stat(c.dir)
	if err != nil {
		return fmt.Errorf("lists: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("lists: %s is not a folder", c.dir)
	}
	s.files = append(s.files, stamp{path: c.dir, modTime: fi.ModTime(), size: fi.Size()})
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("lists: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || e.IsDir() ||
			!strings.Contains(name, "@") && !strings.HasSuffix(name, ".list") {
			continue
		}
		if err := s.readFile(c, filepath.Join(c.dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// headerKeys are the keys of the "# key: value" lines of a list file.
var headerKeys = []string{"address", "name", "id", "owner", "posters", "unsubscribe", "bounce"}

// readFile reads one list file (the format is in README.md): "# key:
// value" header comments with the keys above, other comments, and one
// member a line.
func (s *set) readFile(c config, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("lists: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("lists: %w", err)
	}
	s.files = append(s.files, stamp{path: path, modTime: fi.ModTime(), size: fi.Size()})

	header := map[string]string{}
	headerLine := map[string]int{}
	var members []string
	var memberLines []int
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		if line == "" {
			continue
		}
		if comment, ok := strings.CutPrefix(line, "#"); ok {
			key, value, ok := strings.Cut(comment, ":")
			key = strings.ToLower(strings.TrimSpace(key))
			if !ok || !slices.Contains(headerKeys, key) {
				continue // an ordinary comment
			}
			if at, dup := headerLine[key]; dup {
				return syntaxErr(path, i+1, "# %s: given twice (first at line %d)", key, at)
			}
			header[key], headerLine[key] = strings.TrimSpace(value), i+1
			continue
		}
		if strings.ContainsAny(line, " \t,") {
			return syntaxErr(path, i+1, "want one member a line, got %q", line)
		}
		members = append(members, line)
		memberLines = append(memberLines, i+1)
	}

	base := filepath.Base(path)
	addr := header["address"]
	switch {
	case strings.Contains(base, "@"):
		if addr != "" && !strings.EqualFold(addr, base) {
			return syntaxErr(path, headerLine["address"], "# address: %s differs from the file name", addr)
		}
		addr = base
	case addr == "":
		if c.domain == "" {
			return fmt.Errorf("lists: %s: no # address: line and no domain setting for %s", path, base)
		}
		addr = strings.TrimSuffix(base, ".list") + "@" + c.domain
	}
	l, err := newList(c, path, addr)
	if err != nil {
		return err
	}
	l.name, l.id, l.unsubscribe = header["name"], header["id"], header["unsubscribe"]
	l.unsubscribe = strings.TrimSuffix(strings.TrimPrefix(l.unsubscribe, "<"), ">")
	for _, k := range []string{"owner", "bounce"} {
		if v := header[k]; v != "" {
			a, err := checkAddress(c, v)
			if err != nil {
				return syntaxErr(path, headerLine[k], "# %s: %v", k, err)
			}
			if k == "owner" {
				l.owner = a
			} else {
				l.bounce = a
			}
		}
	}
	if p, ok := header["posters"]; ok {
		if !slices.Contains(posterPolicies, p) {
			return syntaxErr(path, headerLine["posters"], "# posters: want one of %s, got %q", strings.Join(posterPolicies, ", "), p)
		}
		l.posters = p
	}
	if strings.ContainsAny(l.name+l.id+l.unsubscribe, "\r\n<>") {
		return fmt.Errorf("lists: %s: # name:, # id: and # unsubscribe: must not hold < or >", path)
	}
	for i, m := range members {
		if err := l.add(c, m); err != nil {
			return syntaxErr(path, memberLines[i], "%v", err)
		}
	}
	return s.put(c, l)
}

// checkAddress checks an address, giving a bare name the config domain.
func checkAddress(c config, s string) (string, error) {
	s = strings.TrimSpace(s)
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		if c.domain == "" {
			return "", fmt.Errorf("%q has no domain and the domain setting is empty", s)
		}
		s, at = s+"@"+c.domain, len(s)
	}
	local, domain := s[:at], strings.ToLower(s[at+1:])
	if local == "" || !address.ValidDomain(domain) || strings.ContainsFunc(local, func(r rune) bool {
		return r <= ' ' || r == 0x7f || r == ',' || r == '<' || r == '>'
	}) {
		return "", fmt.Errorf("%q is not an address", s)
	}
	return local + "@" + domain, nil
}
