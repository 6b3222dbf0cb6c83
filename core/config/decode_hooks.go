package config

import (
	"errors"
	"fmt"
	"maps"
	"math/big"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/mailgate/gateway/sdk"
)

// hooks converts the hook blocks (lua, plugin) and the pipeline that
// orders them. Every pipeline entry names a block, no entry is listed
// twice, and every block is listed; without a pipeline the blocks run in
// file order.
func (d *decoder) hooks(r *rawFile, c *Config) {
	var luaLabels, pluginLabels []hcl.Range
	c.Lua, luaLabels = d.luaHooks(r.Lua)
	c.Plugins, pluginLabels = d.pluginHooks(r.Plugins)
	type block struct {
		name  string    // pipeline name
		label hcl.Range // the block's label
	}
	var blocks []block
	for i, h := range c.Lua {
		blocks = append(blocks, block{h.PipelineName(), luaLabels[i]})
	}
	for i, h := range c.Plugins {
		blocks = append(blocks, block{h.PipelineName(), pluginLabels[i]})
	}
	slices.SortStableFunc(blocks, func(a, b block) int { return a.label.Start.Byte - b.label.Start.Byte })
	defined := map[string]hcl.Range{} // pipeline name → the block's label
	var order []string                // pipeline names in file order
	for _, b := range blocks {
		if _, dup := defined[b.name]; !dup {
			defined[b.name] = b.label
			order = append(order, b.name)
		}
	}
	if !present(r.Pipeline) {
		c.Pipeline = order
		return
	}
	list, ok := value[[]string](d, "pipeline", r.Pipeline)
	if !ok {
		return
	}
	ranges := elementRanges(r.Pipeline, len(list))
	listed := map[string]hcl.Range{}
	for i, entry := range list {
		kind, name, _ := strings.Cut(entry, ".")
		switch {
		case kind != HookLua && kind != HookPlugin || name == "":
			d.errorf(ranges[i], "Invalid pipeline entry",
				`pipeline: %q: want "lua.<name>" or "plugin.<name>", naming a hook block.`, entry)
			continue
		}
		if _, ok := defined[entry]; !ok {
			d.errorf(ranges[i], "Undefined hook",
				`pipeline: %q: there is no %s %q block%s.`, entry, kind, name, definedList(order))
			continue
		}
		if first, dup := listed[entry]; dup {
			d.errorf(ranges[i], "Duplicate pipeline entry",
				"pipeline: %q is already listed, at %s.", entry, line(first))
			continue
		}
		listed[entry] = ranges[i]
		c.Pipeline = append(c.Pipeline, entry)
	}
	for _, name := range order {
		if _, ok := listed[name]; !ok {
			kind, label, _ := strings.Cut(name, ".")
			d.errorf(defined[name], "Hook not in pipeline",
				`%s %q is not in pipeline; add %q to pipeline, or remove the block.`, kind, label, name)
		}
	}
}

// definedList tells which hooks are defined, for an "undefined" detail.
func definedList(names []string) string {
	if len(names) == 0 {
		return " (none is defined)"
	}
	return "; the hooks defined are " + strings.Join(names, ", ")
}

// validHookName reports whether s can label a hook block: a listener name
// without '.', which separates the kind from the name in the pipeline.
func validHookName(s string) bool {
	return validListenerName(s) && !strings.Contains(s, ".")
}

// luaHooks converts the lua "name" { … } blocks; it also returns the range
// of each one's label.
func (d *decoder) luaHooks(rs []rawLua) ([]LuaHook, []hcl.Range) {
	var (
		hooks  []LuaHook
		labels []hcl.Range
		names  = map[string]hcl.Range{}
	)
	for i := range rs {
		r := &rs[i]
		if !validHookName(r.Name) {
			d.errorf(r.NameRange, "Invalid hook name",
				"A lua block's name has letters, digits, '_' and '-', and starts with a letter or digit; got %q.", r.Name)
		}
		if first, dup := names[r.Name]; dup {
			d.errorf(r.NameRange, "Duplicate lua block",
				"A lua block named %q is already defined at %s.", r.Name, line(first))
			continue
		}
		names[r.Name] = r.NameRange
		h := defaultLuaHook(r.Name)
		if d.required("path", r.Path, r.DefRange) {
			d.file("path", r.Path, &h.Path)
		}
		d.duration("timeout", r.Timeout, &h.Timeout, false)
		d.enum("on_error", r.OnError, &h.OnError, onErrors())
		if d.size("max_memory", r.MaxMemory, &h.MaxMemory) && h.MaxMemory < minLuaMaxMemory {
			d.errorf(r.MaxMemory.Range(), "Invalid size", "max_memory must be at least 1MB; got %d bytes.", h.MaxMemory)
		}
		h.Params = d.params("params", r.Params)
		if r.Match != nil {
			h.Match = d.match(r.Match)
		}
		hooks = append(hooks, h)
		labels = append(labels, r.NameRange)
	}
	return hooks, labels
}

// pluginHooks converts the plugin "name" { … } blocks. The config block is
// only converted here: the plugin's schema checks it when it starts. It
// also returns the range of each one's label.
func (d *decoder) pluginHooks(rs []rawPlugin) ([]PluginHook, []hcl.Range) {
	var (
		hooks  []PluginHook
		labels []hcl.Range
		names  = map[string]hcl.Range{}
	)
	for i := range rs {
		r := &rs[i]
		if !validHookName(r.Name) {
			d.errorf(r.NameRange, "Invalid hook name",
				"A plugin block's name has letters, digits, '_' and '-', and starts with a letter or digit; got %q.", r.Name)
		}
		if first, dup := names[r.Name]; dup {
			d.errorf(r.NameRange, "Duplicate plugin block",
				"A plugin block named %q is already defined at %s.", r.Name, line(first))
			continue
		}
		names[r.Name] = r.NameRange
		h := defaultPluginHook(r.Name)
		if d.required("path", r.Path, r.DefRange) {
			d.executable("path", r.Path, &h.Path)
		}
		if d.sha256("sha256", r.SHA256, &h.SHA256) && h.SHA256 != "" {
			rg := r.SHA256.Range()
			h.SHA256Range = Range{Filename: rg.Filename, Line: rg.Start.Line}
		}
		d.duration("timeout", r.Timeout, &h.Timeout, false)
		d.enum("on_error", r.OnError, &h.OnError, onErrors())
		if r.Match != nil {
			h.Match = d.match(r.Match)
		}
		h.ConfigRange = Range{Filename: r.DefRange.Filename, Line: r.DefRange.Start.Line}
		if r.Config != nil {
			h.ConfigRange = Range{Filename: r.Config.DefRange.Filename, Line: r.Config.DefRange.Start.Line}
			h.Config, h.ConfigLines = d.pluginConfig(r.Config)
		}
		hooks = append(hooks, h)
		labels = append(labels, r.NameRange)
	}
	return hooks, labels
}

// pluginConfig converts a plugin's config { … } block: its attributes as
// Go values (see goValue; a null attribute is left out) and the line of
// each. The block has no nested blocks.
func (d *decoder) pluginConfig(r *rawPluginConfig) (map[string]any, map[string]int) {
	attrs, diags := r.Body.JustAttributes()
	d.diags = append(d.diags, diags...)
	config := make(map[string]any, len(attrs))
	lines := make(map[string]int, len(attrs))
	for _, name := range slices.Sorted(maps.Keys(attrs)) {
		a := attrs[name]
		val, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			d.diags = append(d.diags, diags...)
			continue
		}
		if val.IsNull() {
			continue
		}
		v, err := goValue(val)
		if err != nil {
			d.errorf(a.Expr.Range(), "Unsuitable value", "config: %s: %s.", name, err)
			continue
		}
		config[name] = v
		lines[name] = a.NameRange.Start.Line
	}
	return config, lines
}

// executable decodes the path of a file this process can run, resolved
// against the config file's folder.
func (d *decoder) executable(name string, expr hcl.Expression, dst *string) bool {
	var path string
	if !d.file(name, expr, &path) {
		return false
	}
	if d.skipFiles {
		*dst = path
		return true
	}
	st, err := os.Stat(path)
	if err != nil {
		d.errorf(expr.Range(), "Unreadable file", "%s: %s: %s.", name, path, err)
		return false
	}
	if st.Mode().Perm()&0o111 == 0 {
		d.errorf(expr.Range(), "Not executable",
			"%s: %s is not executable (mode %04o); a plugin is a program: chmod +x it.", name, path, st.Mode().Perm())
		return false
	}
	*dst = path
	return true
}

// sha256 decodes a SHA-256 digest written as 64 hexadecimal digits, and
// lower-cases it.
func (d *decoder) sha256(name string, expr hcl.Expression, dst *string) bool {
	s, ok := value[string](d, name, expr)
	if !ok {
		return false
	}
	sum := strings.ToLower(s)
	bad := len(sum) != 64
	for i := 0; i < len(sum) && !bad; i++ {
		c := sum[i]
		bad = !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f')
	}
	if bad {
		d.errorf(expr.Range(), "Invalid SHA-256",
			"%s = %q: want 64 hexadecimal digits, as sha256sum prints them.", name, s)
		return false
	}
	*dst = sum
	return true
}

// match converts match { … }.
func (d *decoder) match(r *rawMatch) Match {
	var m Match
	m.Stages = d.stages("stage", r.Stage)
	m.Clients = d.networks("client", r.Client)
	m.SenderDomains = d.domainPatterns("sender_domain", r.SenderDomain)
	m.RecipientDomains = d.domainPatterns("recipient_domain", r.RecipientDomain)
	var auth bool
	if d.boolean("authenticated", r.Authenticated, &auth) {
		m.Authenticated = &auth
	}
	m.Commands = d.verbs("command", r.Command)
	return m
}

// verbs converts a list of SMTP command verbs: upper-cased, letters only,
// duplicates dropped.
func (d *decoder) verbs(name string, expr hcl.Expression) []string {
	list, ok := value[[]string](d, name, expr)
	if !ok {
		return nil
	}
	ranges := elementRanges(expr, len(list))
	var out []string
	for i, s := range list {
		v := strings.ToUpper(s)
		if v == "" || strings.Trim(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			d.errorf(ranges[i], "Invalid command", "%s: %q is not a command verb (letters only, as RCPT or EXPN).", name, s)
			continue
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// stages converts a list of stage names (sdk.Stages), duplicates dropped.
func (d *decoder) stages(name string, expr hcl.Expression) []sdk.Stage {
	list, ok := value[[]string](d, name, expr)
	if !ok {
		return nil
	}
	ranges := elementRanges(expr, len(list))
	var out []sdk.Stage
	for i, s := range list {
		st := sdk.Stage(s)
		if !slices.Contains(sdk.Stages, st) {
			names := make([]string, len(sdk.Stages))
			for j, v := range sdk.Stages {
				names[j] = string(v)
			}
			d.errorf(ranges[i], "Invalid stage", "%s: %q is not a stage: want %s.", name, s, orList(names))
			continue
		}
		if !slices.Contains(out, st) {
			out = append(out, st)
		}
	}
	return out
}

// domainPatterns converts a list of domain names or "*.domain" patterns:
// lower-cased, without a trailing dot, duplicates dropped.
func (d *decoder) domainPatterns(name string, expr hcl.Expression) []string {
	list, ok := value[[]string](d, name, expr)
	if !ok {
		return nil
	}
	ranges := elementRanges(expr, len(list))
	var out []string
	for i, s := range list {
		dom, err := DomainPattern(s)
		if err != nil {
			d.errorf(ranges[i], "Invalid domain name", "%s: %s.", name, err)
			continue
		}
		if !slices.Contains(out, dom) {
			out = append(out, dom)
		}
	}
	return out
}

// DomainPattern checks and normalises a domain name or "*.name" pattern
// (every subdomain of name): lower case, without a trailing dot. The
// error says what is wrong with s, quoting it. The configuration's domain
// lists and the operator's domain holds take their patterns through it.
func DomainPattern(s string) (string, error) {
	if dot, ok := strings.CutPrefix(s, "."); ok && dot != "" && !strings.HasPrefix(dot, ".") {
		// Postfix's ".name" for subdomains: say how it is written here.
		return "", fmt.Errorf(`%q: write "*.%s" for the subdomains of %s`, s, dot, dot)
	}
	rest, wild := strings.CutPrefix(s, "*.")
	dom, err := normalizeDomain(rest)
	if err != nil {
		return "", fmt.Errorf(`%q is not a domain name or "*." and a domain name: %w`, s, err)
	}
	if wild {
		dom = "*." + dom
	}
	return dom, nil
}

// params converts an arbitrary HCL object into Go values (see goValue).
func (d *decoder) params(name string, expr hcl.Expression) map[string]any {
	if expr == nil {
		return nil
	}
	val, diags := expr.Value(nil)
	if diags.HasErrors() {
		d.diags = append(d.diags, diags...)
		return nil
	}
	if val.IsNull() {
		return nil
	}
	if ty := val.Type(); !ty.IsObjectType() && !ty.IsMapType() {
		d.errorf(expr.Range(), "Unsuitable value type",
			`%s: want an object, as in %s = { key = "value" }; got %s.`, name, name, ty.FriendlyName())
		return nil
	}
	v, err := goValue(val)
	if err != nil {
		d.errorf(expr.Range(), "Unsuitable value", "%s: %s.", name, err)
		return nil
	}
	return v.(map[string]any)
}

// goValue converts a non-null cty value into string, int64 (a whole number
// that fits), float64 (any other number), bool, []any (list, tuple, set) or
// map[string]any (object, map). A null attribute of an object or map is
// left out, as if it were not written; a null in a list is an error.
func goValue(v cty.Value) (any, error) {
	if !v.IsKnown() {
		return nil, errors.New("the value is not known")
	}
	if v.IsNull() {
		return nil, errors.New("null is allowed only as an attribute's value, which leaves the attribute out")
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		return v.AsString(), nil
	case ty == cty.Bool:
		return v.True(), nil
	case ty == cty.Number:
		f := v.AsBigFloat()
		if f.IsInt() {
			if i, acc := f.Int64(); acc == big.Exact {
				return i, nil
			}
		}
		x, _ := f.Float64()
		return x, nil
	case ty.IsListType(), ty.IsTupleType(), ty.IsSetType():
		out := make([]any, 0, v.LengthInt())
		for it := v.ElementIterator(); it.Next(); {
			i, e := it.Element()
			g, err := goValue(e)
			if err != nil {
				if i.Type() == cty.Number {
					return nil, fmt.Errorf("[%s]: %w", i.AsBigFloat().Text('f', -1), err)
				}
				return nil, err
			}
			out = append(out, g)
		}
		return out, nil
	case ty.IsMapType(), ty.IsObjectType():
		out := make(map[string]any, v.LengthInt())
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			if e.IsKnown() && e.IsNull() {
				continue
			}
			g, err := goValue(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k.AsString(), err)
			}
			out[k.AsString()] = g
		}
		return out, nil
	}
	return nil, fmt.Errorf("values of type %s are not supported", ty.FriendlyName())
}
