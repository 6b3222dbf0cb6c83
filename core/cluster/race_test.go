//go:build race

package cluster_test

// raceEnabled: under the race detector the in-process NATS servers store
// several times slower, which tests that measure timings cannot allow for.
const raceEnabled = true
