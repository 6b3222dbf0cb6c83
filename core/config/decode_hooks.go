package config

import (
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/mailgate/gateway/sdk"
)

// hooks converts the hook blocks (lua, later plugin) and the pipeline that
// orders them. Every pipeline entry names a block, no entry is listed
// twice, and every block is listed; without a pipeline the blocks run in
// file order.
func (d *decoder) hooks(r *rawFile, c *Config) {
	c.Lua = d.luaHooks(r.Lua)
	defined := map[string]hcl.Range{} // pipeline name → the block's label
	var order []string                // pipeline names in file order
	for i, h := range c.Lua {
		name := h.PipelineName()
		if _, dup := defined[name]; !dup {
			defined[name] = r.Lua[i].NameRange
			order = append(order, name)
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
		case kind == HookPlugin:
			d.errorf(ranges[i], "Unsupported hook",
				`pipeline: %q: plugin blocks are not supported yet; only lua "name" { … } blocks are.`, entry)
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

// luaHooks converts the lua "name" { … } blocks.
func (d *decoder) luaHooks(rs []rawLua) []LuaHook {
	var (
		hooks []LuaHook
		names = map[string]hcl.Range{}
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
		h.Params = d.params("params", r.Params)
		if r.Match != nil {
			h.Match = d.match(r.Match)
		}
		hooks = append(hooks, h)
	}
	return hooks
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
	return m
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
		rest, wild := strings.CutPrefix(s, "*.")
		dom, err := normalizeDomain(rest)
		if err != nil {
			d.errorf(ranges[i], "Invalid domain name",
				`%s: %q is not a domain name or "*." and a domain name: %s.`, name, s, err)
			continue
		}
		if wild {
			dom = "*." + dom
		}
		if !slices.Contains(out, dom) {
			out = append(out, dom)
		}
	}
	return out
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
