package gateway

// The external tests share the internal tests' scripts.
var (
	PolicyScript = policyScript
	BrokenScript = brokenScript
)

// CloseAdminListenerForTest closes the admin API's socket under it.
func (g *Gateway) CloseAdminListenerForTest() { g.adminLn.Close() }
