package lua

import (
	"fmt"
	"sort"

	glua "github.com/yuin/gopher-lua"
)

// checkParams reports a params value toLua cannot convert.
func checkParams(p map[string]any) error {
	L := glua.NewState(glua.Options{SkipOpenLibs: true})
	defer L.Close()
	_, err := toLua(L, p)
	return err
}

// toLua converts a params value (string, bool, float64, float32, int,
// int64, []any, []string, map[string]any; nil) to a Lua value. Maps are
// filled in key order so that iteration order does not vary between states
// more than Lua's own.
func toLua(L *glua.LState, v any) (glua.LValue, error) {
	switch v := v.(type) {
	case nil:
		return glua.LNil, nil
	case string:
		return glua.LString(v), nil
	case bool:
		return glua.LBool(v), nil
	case float64:
		return glua.LNumber(v), nil
	case float32:
		return glua.LNumber(v), nil
	case int:
		return glua.LNumber(v), nil
	case int64:
		return glua.LNumber(v), nil
	case []string:
		t := L.CreateTable(len(v), 0)
		for _, s := range v {
			t.Append(glua.LString(s))
		}
		return t, nil
	case []any:
		t := L.CreateTable(len(v), 0)
		for i, e := range v {
			lv, err := toLua(L, e)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			if lv == glua.LNil {
				return nil, fmt.Errorf("[%d]: null in a list", i)
			}
			t.Append(lv)
		}
		return t, nil
	case map[string]any:
		t := L.CreateTable(0, len(v))
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			lv, err := toLua(L, v[k])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			t.RawSetString(k, lv)
		}
		return t, nil
	}
	return nil, fmt.Errorf("unsupported value of type %T", v)
}
