package sdk

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
)

// Config value types a ConfigField may declare, and the Go types a
// Configurer receives for them.
const (
	TypeString = "string"       // string
	TypeNumber = "number"       // float64
	TypeBool   = "bool"         // bool
	TypeList   = "list(string)" // []string
	TypeMap    = "map(string)"  // map[string]string
)

// ConfigTypes lists the allowed ConfigField types.
func ConfigTypes() []string { return []string{TypeString, TypeNumber, TypeBool, TypeList, TypeMap} }

// ValidateConfig checks a config block against i.Schema: every field is
// declared, every value has its field's type, every required field is
// present. It returns nil or the problems sorted by field name. The host
// uses it on the HCL block before starting mail, and the sdk's server side
// of Configure uses it before the plugin's Configurer sees the block, so the
// rule lives here only.
//
// Accepted Go values: string (string); any integer or finite float type
// (number); bool (bool); []string or []any of strings (list(string));
// map[string]string or map[string]any of strings (map(string)). A nil value
// has no type and is reported.
func (i Info) ValidateConfig(cfg map[string]any) ConfigErrors {
	fields := make(map[string]ConfigField, len(i.Schema))
	for _, f := range i.Schema {
		fields[f.Name] = f
	}
	var errs ConfigErrors
	for name, v := range cfg {
		f, ok := fields[name]
		if !ok {
			errs = append(errs, &ConfigError{Field: name, Message: "unknown setting"})
			continue
		}
		if !configValueHasType(f.Type, v) {
			errs = append(errs, &ConfigError{Field: name, Message: fmt.Sprintf("want %s, got %s", f.Type, describeValue(v))})
		}
	}
	for _, f := range i.Schema {
		if _, ok := cfg[f.Name]; f.Required && !ok {
			errs = append(errs, &ConfigError{Field: f.Name, Message: "required setting missing"})
		}
	}
	if len(errs) == 0 {
		return nil
	}
	sort.SliceStable(errs, func(a, b int) bool { return errs[a].Field < errs[b].Field })
	return errs
}

// ApplyDefaults returns a copy of cfg with the schema's defaults filled in
// for the fields cfg does not set. cfg itself is not changed.
func (i Info) ApplyDefaults(cfg map[string]any) map[string]any {
	out := make(map[string]any, len(cfg)+len(i.Schema))
	for k, v := range cfg {
		out[k] = v
	}
	for _, f := range i.Schema {
		if _, ok := out[f.Name]; !ok && f.Default != nil {
			out[f.Name] = f.Default
		}
	}
	return out
}

// ValidateSchema checks that i.Schema is well formed: names are set and
// unique, types are in ConfigTypes(), defaults have their field's type, and
// a required field has no default. The errors are joined (errors.Join).
func (i Info) ValidateSchema() error {
	var errs []error
	seen := map[string]bool{}
	for n, f := range i.Schema {
		switch {
		case f.Name == "":
			errs = append(errs, fmt.Errorf("sdk: schema field %d has no name", n))
			continue
		case seen[f.Name]:
			errs = append(errs, fmt.Errorf("sdk: schema field %s declared twice", f.Name))
		}
		seen[f.Name] = true
		if !slices.Contains(ConfigTypes(), f.Type) {
			errs = append(errs, fmt.Errorf("sdk: schema field %s: type %q not one of %v", f.Name, f.Type, ConfigTypes()))
			continue
		}
		if f.Default != nil && !configValueHasType(f.Type, f.Default) {
			errs = append(errs, fmt.Errorf("sdk: schema field %s: default %s is not a %s", f.Name, describeValue(f.Default), f.Type))
		}
		if f.Required && f.Default != nil {
			errs = append(errs, fmt.Errorf("sdk: schema field %s: required with a default", f.Name))
		}
	}
	return errors.Join(errs...)
}

func configValueHasType(typ string, v any) bool {
	switch typ {
	case TypeString:
		_, ok := v.(string)
		return ok
	case TypeBool:
		_, ok := v.(bool)
		return ok
	case TypeNumber:
		switch x := v.(type) {
		case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
			return true
		case float32:
			return !math.IsNaN(float64(x)) && !math.IsInf(float64(x), 0)
		case float64:
			return !math.IsNaN(x) && !math.IsInf(x, 0)
		}
		return false
	case TypeList:
		switch x := v.(type) {
		case []string:
			return true
		case []any:
			for _, e := range x {
				if _, ok := e.(string); !ok {
					return false
				}
			}
			return true
		}
		return false
	case TypeMap:
		switch x := v.(type) {
		case map[string]string:
			return true
		case map[string]any:
			for _, e := range x {
				if _, ok := e.(string); !ok {
					return false
				}
			}
			return true
		}
		return false
	}
	return false
}

func describeValue(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "bool"
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
		return "number"
	}
	switch reflect.TypeOf(v).Kind() {
	case reflect.Slice, reflect.Array:
		return "list"
	case reflect.Map, reflect.Struct:
		return "map"
	}
	return fmt.Sprintf("%T", v)
}

// StagesOf lists the stages p handles, in Stages order, from the hook
// interfaces it implements (NotifyHook covers the four notifications).
// Serve fills Info.Stages with it.
func StagesOf(p any) []Stage {
	var out []Stage
	for _, s := range Stages {
		if handles(p, s) {
			out = append(out, s)
		}
	}
	return out
}

func handles(p any, s Stage) bool {
	var ok bool
	switch s {
	case StageConnect:
		_, ok = p.(ConnectHook)
	case StageHelo:
		_, ok = p.(HeloHook)
	case StageAuth:
		_, ok = p.(AuthHook)
	case StageMail:
		_, ok = p.(MailHook)
	case StageRcpt:
		_, ok = p.(RcptHook)
	case StageCommand:
		_, ok = p.(CommandHook)
	case StageData:
		_, ok = p.(DataHook)
	case StagePredelivery:
		_, ok = p.(PredeliveryHook)
	case StageDelivered, StageDeferred, StageBounced, StageDisconnect:
		_, ok = p.(NotifyHook)
	}
	return ok
}
