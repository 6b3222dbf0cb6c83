package lua

import (
	"context"
	"errors"
	"fmt"

	glua "github.com/yuin/gopher-lua"
)

// ErrMemoryLimit is wrapped by the error of a call whose state would hold
// more than Options.MaxMemory.
var ErrMemoryLimit = errors.New("lua: memory limit exceeded")

// What the VM's instructions are charged. gopher-lua's instructions
// allocate up to about 115 bytes each on average (a table of four fields
// in a loop, garbage included; measured), strings aside, which are charged
// where they are made.
const (
	tickBatch = 1 << 10 // instructions charged at once
	tickBytes = 128     // bytes charged per instruction

	checkBytes = 64 << 10 // a host function's charge from which it looks at the deadline
)

// account is a state's memory: what it held when last measured and what
// it may have made since. It lives as long as the state, across calls.
type account struct {
	max   int64 // Options.MaxMemory
	live  int64 // bytes the last measurement found
	since int64 // bytes charged since
}

// meter is the context a call runs under (LState.SetContext), for the
// state and every coroutine it makes. gopher-lua's VM calls Done before
// every instruction and stops at the first closed channel it returns. The
// meter looks at the call's context at the first instruction and then
// once every tickBatch, with Err, as do host functions that loop or are
// about to make checkBytes or more, and otherwise returns nil (never
// ready): waiting on the call's Done would start the timer of a hook's
// deadline on every call (core/hook starts it only for those who wait),
// and a batch of instructions takes microseconds. It charges the state's
// account for each batch too; once the account is over its limit or the
// context has ended, Done returns a closed channel, so the VM raises Err
// at the next instruction, however often the script catches it with
// pcall. Only the goroutine of the call may use it: host services get the
// call's own ctx (state.ctx).
type meter struct {
	context.Context
	st    *state
	ticks int
	err   error         // the memory error or the context's, once met
	over  chan struct{} // closed with err
}

func newMeter(ctx context.Context, st *state) *meter {
	return &meter{Context: ctx, st: st}
}

// Done counts an instruction (the VM calls it before each) and returns a
// closed channel once the call's context has ended or the memory limit
// is reached, else nil.
func (m *meter) Done() <-chan struct{} {
	if m.err == nil {
		if m.ticks == 0 {
			_ = m.check() // the first instruction and every tickBatch after
		}
		if m.ticks++; m.ticks == tickBatch {
			m.ticks = 0
			_ = m.charge(tickBatch*tickBytes, "")
		}
	}
	return m.over
}

// check ends the meter for good once the call's context has ended, and
// returns the meter's error.
func (m *meter) check() error {
	if m.err == nil {
		if err := m.Context.Err(); err != nil {
			m.end(err)
		}
	}
	return m.err
}

// end makes err the meter's error for good and closes its channel.
func (m *meter) end(err error) {
	m.err = err
	m.over = make(chan struct{})
	close(m.over)
}

// Err returns the meter's error once it has one, else the call's
// ctx.Err().
func (m *meter) Err() error {
	if m.err != nil {
		return m.err
	}
	return m.Context.Err()
}

// charge accounts n bytes the state is about to make (for what, a host
// function; "" for instructions). When what the state held at its last
// measurement, what it made since and n would pass max, it measures the
// state again (garbage no longer counts): the call fails, for good, if
// the state then holds more than half of max or n does not fit. Half of
// max is for what the state makes between two measurements (garbage the
// Go collector has not reclaimed yet is memory of the process too), so a
// state is measured after making at least as much as it holds, and the
// measurements cost about as much as the work they watch at worst. charge
// also fails with the call's ctx.Err() when a measurement runs into the
// deadline. A host function about to make checkBytes or more looks at
// the call's context first: a few such calls (doubling a string) can take
// long without running many instructions.
func (m *meter) charge(n int64, what string) error {
	if m.err != nil {
		return m.err
	}
	if what != "" && n >= checkBytes {
		if err := m.check(); err != nil {
			return err
		}
	}
	a := &m.st.acct
	if a.live+a.since+n <= a.max {
		a.since += n
		return nil
	}
	live, err := m.st.measure(m.Context)
	if err != nil {
		_ = m.check() // the context has ended: for good
		return err
	}
	a.live, a.since = live, 0
	switch {
	case live > a.max/2:
		m.trip(what, fmt.Errorf("%w: the state holds about %d bytes, more than half of max_memory %d",
			ErrMemoryLimit, live, a.max))
		return m.err
	case live+n > a.max:
		m.trip(what, fmt.Errorf("%w: the state holds about %d bytes and asks for %d more, past max_memory %d",
			ErrMemoryLimit, live, n, a.max))
		return m.err
	}
	a.since = n
	return nil
}

// trip makes err, prefixed with where the running code is and what asked,
// the meter's error for good.
func (m *meter) trip(what string, err error) {
	th := m.st.L.G.CurrentThread
	where := ""
	for level := 0; level < 8; level++ { // the Lua code that called the host functions
		if where = th.Where(level); where != "[G]:" {
			break
		}
	}
	if what != "" {
		what += ": "
	}
	m.end(fmt.Errorf("%s %s%w", where, what, err))
}

// charge is meter.charge for a host function: it raises the error in L.
func (st *state) charge(L *glua.LState, what string, n int) {
	if st.m == nil {
		return
	}
	if err := st.m.charge(int64(n), what); err != nil {
		if errors.Is(err, ErrMemoryLimit) {
			L.Error(glua.LString(err.Error()), 0) // it says where already
		}
		L.RaiseError("%s: %v", what, err)
	}
}

// tick is for host functions that loop: every tickBatch steps it looks at
// the call's context and raises its error.
func (st *state) tick(L *glua.LState, what string, steps *int) {
	*steps++
	if *steps%tickBatch != 0 || st.m == nil {
		return
	}
	if err := st.m.check(); err != nil {
		L.RaiseError("%s: %v", what, err)
	}
}
