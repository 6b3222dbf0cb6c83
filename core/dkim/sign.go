package dkim

import (
	"bufio"
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"golang.org/x/net/idna"

	"github.com/mailgate/gateway/core/message"
	"github.com/mailgate/gateway/sdk"
)

// maxHeader is the largest header section Sign reads before it gives up
// (the listeners' max_header_size is far below it).
const maxHeader = 8 << 20

// ErrHeaderTooLarge: the header section is longer than Sign reads.
var ErrHeaderTooLarge = errors.New("dkim: header section too large to sign")

// Sign reads the message from r (header section and body, CRLF line
// breaks) and returns the DKIM-Signature field that signs it, folded and
// ending in CRLF, to put on top of the message as it is; and the domain
// that signed. The domain is the block that Match finds for the domain of
// the message's From: field; field is "" and d nil when there is none: no
// block for it, no From:, more than one From: field or mailboxes of more
// than one domain in it (no single author domain, so DMARC has nothing to
// align with). An error is a failure to read r or to sign.
func (ks *Keys) Sign(r io.Reader) (field string, d *Domain, err error) {
	if ks.Len() == 0 {
		return "", nil, nil
	}
	br := bufio.NewReaderSize(r, 4<<10)
	head, ended, err := readHeader(br)
	if err != nil {
		return "", nil, err
	}
	fields, _, err := message.ParseHeader(bytes.NewReader(head))
	if err != nil {
		return "", nil, fmt.Errorf("dkim: reading the header: %w", err)
	}
	author, ok := authorDomain(fields)
	if !ok {
		return "", nil, nil
	}
	if d, ok = ks.Match(author); !ok {
		return "", nil, nil
	}
	if !ended {
		// Only a header section (RFC 5322 allows a message without a
		// body and the empty line before it), as the next hop gets it:
		// its last line ended by CRLF (our client ends the content so).
		// A verifier reads it as fields and an empty body, which is what
		// go-msgauth signs once the section is ended.
		if len(head) > 0 && head[len(head)-1] != '\n' {
			head = append(head, crlf...)
		}
		head = append(head, crlf...)
	}
	field, err = d.sign(io.MultiReader(bytes.NewReader(head), br), fields)
	if err != nil {
		return "", nil, err
	}
	return field, d, nil
}

// sign signs the message in r, whose header fields are fields.
func (d *Domain) sign(r io.Reader, fields []headerField) (string, error) {
	s, err := msgdkim.NewSigner(&msgdkim.SignOptions{
		Domain:                 d.Name,
		Selector:               d.Selector,
		Signer:                 d.Key.signer,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: msgdkim.CanonicalizationRelaxed,
		BodyCanonicalization:   msgdkim.CanonicalizationRelaxed,
		HeaderKeys:             d.signedFields(fields),
	})
	if err != nil {
		return "", fmt.Errorf("dkim: %s: %w", d.Name, err)
	}
	defer s.Close()
	if _, err := io.Copy(s, r); err != nil {
		return "", fmt.Errorf("dkim: signing for %s: %w", d.Name, err)
	}
	if err := s.Close(); err != nil {
		return "", fmt.Errorf("dkim: signing for %s: %w", d.Name, err)
	}
	return s.Signature(), nil
}

// headerField is a field of the message as core/message parses it.
type headerField = sdk.HeaderField

// signedFields is the h= list for a message with fields: each of
// d.Headers as many times as the message has it (RFC 6376 §5.4.2: a
// verifier takes the instances from the bottom up), and From once more,
// so that adding a From field breaks the signature.
func (d *Domain) signedFields(fields []headerField) []string {
	count := make(map[string]int, len(fields))
	for _, f := range fields {
		count[strings.ToLower(f.Name)]++
	}
	var keys []string
	seen := make(map[string]bool, len(d.Headers))
	for _, h := range d.Headers {
		lh := strings.ToLower(h)
		if seen[lh] {
			continue
		}
		seen[lh] = true
		n := count[lh]
		if lh == "from" {
			n++
		}
		for range n {
			keys = append(keys, h)
		}
	}
	return keys
}

// authorDomain is the domain of the message's author (RFC 5322 From:), in
// lower-case A-labels: ok only when there is exactly one From: field and
// every mailbox in it has that domain.
func authorDomain(fields []headerField) (string, bool) {
	var from []string
	for _, f := range fields {
		if strings.EqualFold(f.Name, "From") {
			from = append(from, f.Value)
		}
	}
	if len(from) != 1 {
		return "", false
	}
	list, err := mail.ParseAddressList(from[0])
	if err != nil || len(list) == 0 {
		return "", false
	}
	domain := ""
	for _, a := range list {
		at := strings.LastIndexByte(a.Address, '@')
		if at < 0 {
			return "", false
		}
		dom, err := idna.Lookup.ToASCII(a.Address[at+1:])
		if err != nil {
			return "", false
		}
		dom = strings.ToLower(strings.TrimSuffix(dom, "."))
		if domain != "" && dom != domain {
			return "", false
		}
		domain = dom
	}
	return domain, domain != ""
}

// crlf ends a line.
var crlf = []byte("\r\n")

// readHeader reads the header section from br, up to and including the
// empty line that ends it, or all of a message that has no such line
// (ended false).
func readHeader(br *bufio.Reader) (head []byte, ended bool, err error) {
	lineStart := 0 // where the line being read starts in head
	for {
		chunk, err := br.ReadSlice('\n')
		head = append(head, chunk...)
		switch line := head[lineStart:]; {
		case err == io.EOF:
			return head, false, nil
		case err != nil && !errors.Is(err, bufio.ErrBufferFull):
			return nil, false, fmt.Errorf("dkim: reading the header: %w", err)
		case len(head) > maxHeader:
			return nil, false, ErrHeaderTooLarge
		case err == nil && (string(line) == "\r\n" || string(line) == "\n"):
			return head, true, nil
		case err == nil:
			lineStart = len(head) // a whole line; a long one comes in chunks
		}
	}
}
