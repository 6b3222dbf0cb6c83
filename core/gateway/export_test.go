package gateway

import (
	"context"
	"time"
)

// The external tests share the internal tests' scripts.
var (
	PolicyScript = policyScript
	BrokenScript = brokenScript
)

// CloseAdminListenerForTest closes the admin API's socket under it.
func (g *Gateway) CloseAdminListenerForTest() { g.adminLn.Close() }

// SendTLSReportsForTest sends the TLS-RPT reports of the day that holds
// day now, as the reporter's daily run does.
func (g *Gateway) SendTLSReportsForTest(ctx context.Context, day time.Time) error {
	return g.tlsReports.SendDay(ctx, day)
}

// UncopiedPrefix begins the spool's marks of messages whose first copy is
// under way (copyMissing).
const UncopiedPrefix = uncopiedPrefix
