package config

import (
	"errors"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/mailgate/gateway/core/dkim"
	"github.com/mailgate/gateway/core/message"
)

// DKIM is one dkim "domain" { … } block: the key outbound mail whose From:
// domain is Domain (or a subdomain without a block of its own) is signed
// with (core/dkim).
type DKIM struct {
	Domain   string    // the block's label: the signing domain (d=), lower case
	Selector string    // s=: the key's record is <selector>._domainkey.<domain>
	KeyFile  string    // the PEM file, resolved against the config file's folder
	Key      *dkim.Key // KeyFile's key, parsed when the configuration is loaded (and at every reload)
	Headers  []string  // the fields to sign; nil = dkim.DefaultHeaders()
}

// rawDKIM is dkim "domain" { … }.
type rawDKIM struct {
	Domain      string    `hcl:"domain,label"`
	DomainRange hcl.Range `hcl:"domain,label_range"`
	DefRange    hcl.Range `hcl:",def_range"`

	Selector hcl.Expression `hcl:"selector,optional"` // required
	KeyFile  hcl.Expression `hcl:"key_file,optional"` // required
	Headers  hcl.Expression `hcl:"headers,optional"`
}

// dkimBlocks converts the dkim blocks: one per domain, each with a
// selector and a key file holding a key DKIM may use.
func (d *decoder) dkimBlocks(rs []rawDKIM) []DKIM {
	var (
		out  []DKIM
		seen = map[string]hcl.Range{}
	)
	for i := range rs {
		r := &rs[i]
		domain, err := normalizeDomain(r.Domain)
		if err != nil {
			d.errorf(r.DomainRange, "Invalid domain name", "A dkim block's label is the signing domain; %q is not a domain name: %s.", r.Domain, err)
			continue
		}
		if first, dup := seen[domain]; dup {
			d.errorf(r.DomainRange, "Duplicate dkim block", "A dkim block for %q is already defined at %s.", domain, line(first))
			continue
		}
		seen[domain] = r.DomainRange
		b := DKIM{Domain: domain}
		if d.required("selector", r.Selector, r.DefRange) && d.str("selector", r.Selector, &b.Selector) {
			if sel, err := normalizeDomain(b.Selector); err != nil {
				d.errorf(r.Selector.Range(), "Invalid value", "selector = %q is not a DNS name: %s.", b.Selector, err)
			} else {
				b.Selector = sel
			}
		}
		if d.required("key_file", r.KeyFile, r.DefRange) && d.file("key_file", r.KeyFile, &b.KeyFile) && !d.skipFiles {
			b.Key = d.dkimKey(r.KeyFile, b.KeyFile)
		}
		b.Headers = d.signedHeaders(r.Headers)
		out = append(out, b)
	}
	return out
}

// dkimKey parses the key file at path, which key_file (expr) names.
func (d *decoder) dkimKey(expr hcl.Expression, path string) *dkim.Key {
	k, err := dkim.LoadKey(path)
	if err != nil {
		msg := err.Error()
		if errors.Is(err, dkim.ErrBadKey) {
			msg = strings.TrimPrefix(msg, dkim.ErrBadKey.Error()+": ")
		}
		d.errorf(expr.Range(), "Invalid key", "key_file %s: %s.", path, msg)
		return nil
	}
	return k
}

// signedHeaders decodes a dkim block's headers: field names, each once,
// From among them.
func (d *decoder) signedHeaders(expr hcl.Expression) []string {
	list, ok := value[[]string](d, "headers", expr)
	if !ok {
		return nil
	}
	ranges := elementRanges(expr, len(list))
	var seen []string
	for i, h := range list {
		lh := strings.ToLower(h)
		switch {
		case !message.ValidFieldName(h):
			d.errorf(ranges[i], "Invalid value", "headers: %q is not a header field name.", h)
		case slices.Contains(seen, lh):
			d.errorf(ranges[i], "Invalid value", "headers: %q is listed twice (a field is signed as often as the message has it).", h)
		}
		seen = append(seen, lh)
	}
	if !slices.Contains(seen, "from") {
		d.errorf(expr.Range(), "Invalid value", "headers must include From: a DKIM signature always signs it (RFC 6376 §5.4).")
	}
	return list
}
