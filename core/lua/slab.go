package lua

import glua "github.com/yuin/gopher-lua"

// slabSize is how many userdata (or verdicts) a block of a state's slab
// holds.
const slabSize = 32

// slab hands out what every call makes, the userdata of ctx, ctx.txn and
// ctx.msg and the verdicts of gw.accept and the others, from blocks of
// slabSize: one allocation for many calls instead of one or two in each.
// A value a script keeps keeps its block from the collector, a few
// kilobytes, until the script lets it go.
type slab struct {
	uds []glua.LUserData
	vds []verdict
}

// ud returns a zero userdata.
func (s *slab) ud() *glua.LUserData {
	if len(s.uds) == 0 {
		s.uds = make([]glua.LUserData, slabSize)
	}
	u := &s.uds[0]
	s.uds = s.uds[1:]
	return u
}

// verdict returns a zero verdict.
func (s *slab) verdict() *verdict {
	if len(s.vds) == 0 {
		s.vds = make([]verdict, slabSize)
	}
	v := &s.vds[0]
	s.vds = s.vds[1:]
	return v
}
