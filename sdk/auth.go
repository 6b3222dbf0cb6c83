package sdk

// AuthResults are the gateway's checks of a message received from outside
// (a client neither in relay.networks nor authenticated), made at the data
// stage before the hooks run: Message.Auth for plugins, ctx.auth for Lua
// scripts. Every Result is a lower-case RFC 8601 result value ("pass",
// "fail", "softfail", "neutral", "none", "temperror", "permerror", …).
type AuthResults struct {
	SPF   SPFResult
	DKIM  []DKIMResult // one per DKIM-Signature field, in header order; none when unsigned
	DMARC DMARCResult
	ARC   ARCResult
}

// SPFResult is the SPF check (RFC 7208) of the MAIL FROM domain, or of the
// HELO name when MAIL FROM is <>.
type SPFResult struct {
	Result string
	Domain string // the domain checked
}

// DKIMResult is the verification of one DKIM-Signature (RFC 6376).
type DKIMResult struct {
	Result   string
	Domain   string // d=
	Selector string // s=
}

// DMARCResult is the DMARC evaluation (RFC 7489) of the From: domain.
type DMARCResult struct {
	Result string
	// Policy is what the domain asks for this message, "none",
	// "quarantine" or "reject" (sp= for a subdomain, after pct= sampling);
	// "" when the domain publishes no DMARC record.
	Policy string
	Domain string // the From: domain evaluated
}

// ARCResult is the verification of the message's ARC chain (RFC 8617).
type ARCResult struct {
	Result string // "none" when there is no chain or it was not checked
}
