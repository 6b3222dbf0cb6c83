package lua

// StatesCreated returns how many states the script has made since Load,
// the probe state of Load included.
func (s *Script) StatesCreated() int64 { return s.created.Load() }

// StatesAlive returns how many states exist now (idle or in use).
func (s *Script) StatesAlive() int { return len(s.pool.live) }
