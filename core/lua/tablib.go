package lua

import (
	"sort"

	glua "github.com/yuin/gopher-lua"
)

// tableLib replaces table.concat and table.sort with the state's own,
// which charge what they make and look at the call's deadline.
func (st *state) tableLib(tab *glua.LTable) {
	tab.RawSetString("concat", st.L.NewFunction(st.tabConcat))
	tab.RawSetString("sort", st.L.NewFunction(st.tabSort))
}

// tabConcat is table.concat(t[, sep[, i[, j]]]) with gopher-lua's
// bounds (i and j are kept within 1…#t), the result charged before it is
// made.
func (st *state) tabConcat(L *glua.LState) int {
	t := L.CheckTable(1)
	sep := L.OptString(2, "")
	n := t.Len()
	i, j := L.OptInt(3, 1), L.OptInt(4, n)
	if L.GetTop() == 3 && (i > n || i < 1) {
		L.Push(glua.LString(""))
		return 1
	}
	i, j = max(min(i, n), 1), min(j, n)
	if i > j {
		L.Push(glua.LString(""))
		return 1
	}
	parts := make([]string, 0, j-i+1)
	total, steps := 0, 0
	for k := i; k <= j; k++ {
		st.tick(L, "table.concat", &steps)
		v := t.RawGetInt(k)
		if !glua.LVCanConvToString(v) {
			L.RaiseError("invalid value (%s) at index %d in table for concat", v.Type(), k)
		}
		s := glua.LVAsString(v)
		parts = append(parts, s)
		total += len(s) + len(sep)
	}
	st.charge(L, "table.concat", stringBytes+total)
	out := newText(total)
	for k, p := range parts {
		if k > 0 {
			out.add(sep)
		}
		out.add(p)
	}
	L.Push(glua.LString(out.String()))
	return 1
}

// tabSort is table.sort(t[, comp]): t[1…#t] sorted with the order
// function or <, looking at the deadline every few thousand comparisons.
func (st *state) tabSort(L *glua.LState) int {
	t := L.CheckTable(1)
	var less *glua.LFunction
	if L.GetTop() > 1 {
		less = L.CheckFunction(2)
	}
	n := t.Len()
	vs := make([]glua.LValue, n)
	for i := range vs {
		vs[i] = t.RawGetInt(i + 1)
	}
	st.charge(L, "table.sort", n*slotBytes)
	steps := 0
	sort.Sort(sorter{vs, func(a, b glua.LValue) bool {
		st.tick(L, "table.sort", &steps)
		if less == nil {
			return L.LessThan(a, b)
		}
		L.Push(less)
		L.Push(a)
		L.Push(b)
		L.Call(2, 1)
		r := glua.LVAsBool(L.Get(-1))
		L.Pop(1)
		return r
	}})
	for i, v := range vs {
		t.RawSetInt(i+1, v)
	}
	return 0
}

// sorter is sort.Interface, as gopher-lua's table.sort uses, so the order
// of equal elements is the same.
type sorter struct {
	vs   []glua.LValue
	less func(a, b glua.LValue) bool
}

func (s sorter) Len() int           { return len(s.vs) }
func (s sorter) Less(i, j int) bool { return s.less(s.vs[i], s.vs[j]) }
func (s sorter) Swap(i, j int)      { s.vs[i], s.vs[j] = s.vs[j], s.vs[i] }

// unpack wraps unpack(t[, i[, j]]): the values are charged as the table
// they often fill ({unpack(t)}). More than the value stack holds is left
// to fail there.
func (st *state) unpack(orig glua.LGFunction) glua.LGFunction {
	return func(L *glua.LState) int {
		t := L.CheckTable(1)
		i, j := L.OptInt(2, 1), L.OptInt(3, t.Len())
		if n := j - i + 1; n > 0 && n <= L.Options.RegistryMaxSize {
			st.charge(L, "unpack", n*arrayBytes)
		}
		return orig(L)
	}
}
