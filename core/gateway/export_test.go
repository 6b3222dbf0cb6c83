package gateway

// The external tests share the internal tests' scripts.
var (
	PolicyScript = policyScript
	BrokenScript = brokenScript
)
