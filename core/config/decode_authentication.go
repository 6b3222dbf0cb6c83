package config

import "github.com/hashicorp/hcl/v2"

// dmarcModes are the values of authentication.dmarc.
func dmarcModes() []string { return []string{"off", "report", "enforce"} }

// authentication decodes the authentication block. arc_seal names a dkim
// block: only its form is checked here, as a domain name.
func (d *decoder) authentication(r *rawAuthentication, hostname string) *Authentication {
	a := &Authentication{
		SPF:        defaultAuthSPF,
		DKIM:       defaultAuthDKIM,
		DMARC:      defaultAuthDMARC,
		ARC:        defaultAuthARC,
		AuthservID: hostname,
	}
	d.boolean("spf", r.SPF, &a.SPF)
	d.boolean("dkim", r.DKIM, &a.DKIM)
	dmarcOK := d.enum("dmarc", r.DMARC, &a.DMARC, dmarcModes())
	d.boolean("arc", r.ARC, &a.ARC)
	if present(r.ARCSeal) {
		d.domain("arc_seal", r.ARCSeal, &a.ARCSeal)
		if !a.ARC {
			// The seal's cv comes from our arc= result: without the check
			// there is none, and nothing could be sealed.
			d.errorf(r.ARCSeal.Range(), "Invalid value", "arc_seal needs arc = true: a seal carries on the result of checking the chain.")
		}
	}
	if present(r.AuthservID) {
		d.domain("authserv_id", r.AuthservID, &a.AuthservID)
	}
	if dmarcOK && a.DMARC != "off" && !a.SPF && !a.DKIM {
		d.errorf(r.DMARC.Range(), "Invalid value",
			"dmarc = %q needs spf or dkim: DMARC judges their results.", a.DMARC)
	}
	return a
}

// arcSealKey checks that arc_seal (at rng) names a dkim block with an RSA
// key: ARC sets are rsa-sha256 (RFC 8617 §4.1.3; dkimpy and others refuse
// ed25519 there).
func (d *decoder) arcSealKey(rng hcl.Range, domain string, blocks []DKIM) {
	for _, b := range blocks {
		if b.Domain != domain {
			continue
		}
		if b.Key != nil && b.Key.Algorithm() != "rsa" {
			d.errorf(rng, "Invalid value", "arc_seal = %q: its dkim block's key is %s; ARC seals with RSA only.", domain, b.Key.Algorithm())
		}
		return
	}
	d.errorf(rng, "Invalid value", "arc_seal = %q names no dkim block; it seals with that block's selector and key.", domain)
}
