package mailauth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// dkimOutcome is the verification of one DKIM-Signature.
type dkimOutcome struct {
	result           string // pass, fail, neutral, temperror, permerror
	domain, selector string
	b                string // the start of b=, header.b of RFC 6008
	reason           string // why not pass
}

// verifyDKIM verifies the first maxSignatures DKIM-Signature fields of the
// message; none when it has none. The error is a failure to read our own
// copy of the message.
func (c *Checker) verifyDKIM(ctx context.Context, m *Message) ([]dkimOutcome, error) {
	rc, err := m.Open()
	if err != nil {
		return nil, fmt.Errorf("mailauth: open: %w", err)
	}
	defer rc.Close()
	// The tags of each signature, read the way the library reads the
	// header so that its verifications line up with them.
	er := &errReader{r: rc}
	br := bufio.NewReader(er)
	sigs := signatures(br)
	if len(sigs) == 0 {
		if er.err != nil {
			return nil, fmt.Errorf("mailauth: read: %w", er.err)
		}
		return nil, nil
	}
	rc2, err := m.Open()
	if err != nil {
		return nil, fmt.Errorf("mailauth: open: %w", err)
	}
	defer rc2.Close()
	er2 := &errReader{r: rc2}
	vs, verr := dkim.VerifyWithOptions(er2, &dkim.VerifyOptions{
		LookupTXT:        lookupTXT(ctx, c.opt.Resolver),
		MaxVerifications: maxSignatures,
	})
	if err := errors.Join(er.err, er2.err); err != nil {
		return nil, fmt.Errorf("mailauth: read: %w", err)
	}
	sigs = sigs[:min(len(sigs), maxSignatures)]
	out := make([]dkimOutcome, len(sigs))
	for i, tags := range sigs {
		out[i] = dkimOutcome{domain: strings.ToLower(tags["d"]), selector: tags["s"], b: headerB(tags["b"])}
		switch {
		case verr != nil && !errors.Is(verr, dkim.ErrTooManySignatures), i >= len(vs):
			out[i].result, out[i].reason = "permerror", "malformed message"
		default:
			out[i].result, out[i].reason = dkimResult(vs[i].Err)
		}
		c.log.DebugContext(ctx, "mailauth: dkim", "domain", out[i].domain, "selector", out[i].selector,
			"result", out[i].result, "why", out[i].reason)
	}
	return out, nil
}

// dkimResult maps a verification error to an RFC 8601 result.
func dkimResult(err error) (result, reason string) {
	switch {
	case err == nil:
		return "pass", ""
	case dkim.IsTempFail(err):
		return "temperror", strings.TrimPrefix(err.Error(), "dkim: ")
	case dkim.IsPermFail(err):
		return "permerror", strings.TrimPrefix(err.Error(), "dkim: ")
	default:
		return "fail", strings.TrimPrefix(err.Error(), "dkim: ")
	}
}

// headerB is header.b (RFC 6008): the first 8 characters of the
// signature, enough to tell two signatures of one domain apart.
func headerB(b string) string {
	b = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, b)
	return b[:min(len(b), 8)]
}

// signatures returns the tags of the DKIM-Signature fields of the header
// section br starts with, read as go-msgauth reads it (textproto lines, a
// line starting with a blank continues the field before it), in order.
func signatures(br *bufio.Reader) []map[string]string {
	tr := textproto.NewReader(br)
	var fields []string
	for {
		l, err := tr.ReadLine()
		if err != nil || l == "" {
			break
		}
		if len(fields) > 0 && (l[0] == ' ' || l[0] == '\t') {
			fields[len(fields)-1] += l
		} else {
			fields = append(fields, l)
		}
	}
	var out []map[string]string
	for _, f := range fields {
		k, v, _ := strings.Cut(f, ":")
		if strings.EqualFold(strings.TrimSpace(k), "DKIM-Signature") {
			out = append(out, ParseTags(v))
		}
	}
	return out
}

// ParseTags parses a DKIM tag list (RFC 6376 §3.2), "v=1; d=example.test",
// into its tags, names and values trimmed of white space; a malformed
// entry is left out, a later tag of the same name wins.
func ParseTags(s string) map[string]string {
	tags := make(map[string]string)
	for _, part := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			continue
		}
		tags[k] = strings.TrimSpace(v)
	}
	return tags
}

// errReader remembers the first read error of r other than io.EOF: the
// libraries report a failure to read as a verdict on the message.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}
