//go:build race

package lua_test

// raceEnabled: the race detector's shadow memory counts in the RSS the
// memory tests read, and is not given back.
const raceEnabled = true
