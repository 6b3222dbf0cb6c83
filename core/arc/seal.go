package arc

import (
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Sealer adds the gateway's ARC set to messages it forwards. Build it once
// per key (parsing a key per message costs more than sealing).
type Sealer struct {
	Domain   string        // d=: the sealing domain
	Selector string        // s=: the key's selector under Domain's _domainkey
	Key      crypto.Signer // *rsa.PrivateKey: ARC seals are rsa-sha256 (see Seal)
	// Headers are the fields the ARC-Message-Signature signs (h=), in
	// order; nil signs DefaultHeaders as present in the message. From is
	// required; ARC fields and Authentication-Results are refused.
	Headers []string
	// Now is the clock for t=; nil is time.Now.
	Now func() time.Time

	// ed25519 lets the package's own tests seal with an Ed25519 key, to
	// exercise Verify's ed25519-sha256; see Seal for why nothing else may.
	ed25519 bool
}

// ErrChainEnded is returned by Seal for a message whose newest ARC-Seal
// already says cv=fail: RFC 8617 §5.1 step 1 adds nothing to such a chain.
var ErrChainEnded = errors.New("arc: the chain already ended with cv=fail; no set is added")

// DefaultHeaders is the h= list a Sealer signs by default: the fields that
// carry the message's meaning, and its DKIM signatures, so that a later
// verifier sees they were not changed after us.
func DefaultHeaders() []string {
	return []string{
		"From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID",
		"In-Reply-To", "References", "MIME-Version", "Content-Type",
		"Content-Transfer-Encoding", "List-Id", "List-Post", "List-Unsubscribe",
		"DKIM-Signature",
	}
}

// Seal returns the ARC set to prepend to msg, as header lines ending in
// CRLF: ARC-Seal, ARC-Message-Signature and ARC-Authentication-Results with
// instance n+1, where n is the highest instance in msg. Seal after the last
// change to the message (and after DKIM signing: the AMS signs
// DKIM-Signature).
//
// cv is the status of the chain as the gateway verified it on receipt
// (Result.Status, or the arc= of its own Authentication-Results, see
// FromAuthResults): None for a message without ARC sets, Pass, or Fail,
// which seals only our own set (RFC 8617 §5.1.2). A chain whose newest
// seal already says cv=fail gets ErrChainEnded (§5.1 step 1); TempError or
// a cv that does not fit the message is refused. authResults is the
// ARC-Authentication-Results payload after "i=N; ": the authserv-id and the
// results the gateway found, one line, e.g.
// "mx.example.test; spf=pass smtp.mailfrom=a.test; dkim=pass header.d=a.test; arc=none".
//
// The key must be RSA: Verify accepts ed25519-sha256 (RFC 8463) in a
// chain, but ARC verifiers in the field, dkimpy among them, accept only
// rsa-sha256 in ARC sets, and a seal they cannot read fails the chain.
func (s Sealer) Seal(msg []byte, cv Status, authResults string) ([]byte, error) {
	alg, err := s.check(authResults)
	if err != nil {
		return nil, err
	}
	fields, body := splitMessage(msg)
	prior, err := priorSets(cv, fields)
	if err != nil {
		return nil, err
	}
	n := highestInstance(fields) + 1
	if n > MaxSets {
		return nil, fmt.Errorf("arc: the chain already has %d sets", MaxSets)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	t := strconv.FormatInt(now().Unix(), 10)
	aar := &field{name: hdrAAR, value: foldWords(" i="+strconv.Itoa(n)+"; "+authResults, len(hdrAAR)+1) + "\r\n"}
	ams, err := s.signAMS(fields, body, alg, n, t)
	if err != nil {
		return nil, err
	}
	sets := append(prior, &arcSet{instance: n, aar: aar, ams: ams})
	seal, err := s.signSeal(sets, alg, cv, n, t)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, f := range []*field{seal, ams, aar} {
		out = append(out, f.name+":"...)
		out = append(out, f.value...)
	}
	return out, nil
}

// check validates the Sealer and the payload, and names the algorithm.
func (s Sealer) check(authResults string) (string, error) {
	if s.Domain == "" || s.Selector == "" || s.Key == nil {
		return "", errors.New("arc: a Sealer needs Domain, Selector and Key")
	}
	if strings.TrimSpace(authResults) == "" || strings.ContainsAny(authResults, "\r\n") {
		return "", errors.New("arc: the authentication results must be one non-empty line")
	}
	for _, h := range s.Headers {
		if arcKind(h) != "" || strings.EqualFold(h, "Authentication-Results") {
			return "", fmt.Errorf("arc: the ARC-Message-Signature must not sign %s", h)
		}
	}
	if s.Headers != nil && !hasFold(s.Headers, "From") {
		return "", errors.New("arc: the ARC-Message-Signature must sign From")
	}
	alg, err := algorithmOf(s.Key)
	if err == nil && alg != AlgRSASHA256 && !s.ed25519 {
		return "", errors.New("arc: ARC seals need an RSA key (verifiers accept only rsa-sha256 in ARC sets)")
	}
	return alg, err
}

// priorSets checks cv against the message and returns the sets our seal
// covers besides our own: all of them for pass, none otherwise.
func priorSets(cv Status, fields []field) ([]*arcSet, error) {
	sets, structErr := collectSets(fields)
	if structErr == nil && len(sets) > 0 && describe(sets[len(sets)-1:])[0].CV == "fail" {
		return nil, ErrChainEnded
	}
	switch cv {
	case None:
		if highestInstance(fields) > 0 {
			return nil, errors.New("arc: cv=none for a message with ARC sets")
		}
		return nil, nil
	case Pass:
		if structErr != nil {
			return nil, fmt.Errorf("arc: cv=pass for a broken chain: %w", structErr)
		}
		if len(sets) == 0 {
			return nil, errors.New("arc: cv=pass for a message without ARC sets")
		}
		return sets, nil
	case Fail:
		return nil, nil
	}
	return nil, fmt.Errorf("arc: cannot seal with cv=%q", cv)
}

// signAMS builds the ARC-Message-Signature, relaxed/relaxed.
func (s Sealer) signAMS(fields []field, body []byte, alg string, n int, t string) (*field, error) {
	names := s.Headers
	if names == nil {
		names = presentHeaders(fields, DefaultHeaders())
	}
	var fb folder
	fb.add("i=" + strconv.Itoa(n))
	fb.add("a=" + alg)
	fb.add("c=relaxed/relaxed")
	fb.add("d=" + s.Domain)
	fb.add("s=" + s.Selector)
	fb.add("t=" + t)
	fb.addList("h=", names)
	fb.add("bh=" + base64.StdEncoding.EncodeToString(digestOf(string(relaxedBody(body)))))
	return s.finish(&fb, hdrAMS, headerHashInput(fields, names, "relaxed"))
}

// signSeal builds the ARC-Seal over sets, the last being ours.
func (s Sealer) signSeal(sets []*arcSet, alg string, cv Status, n int, t string) (*field, error) {
	var fb folder
	fb.add("i=" + strconv.Itoa(n))
	fb.add("a=" + alg)
	fb.add("cv=" + string(cv))
	fb.add("d=" + s.Domain)
	fb.add("s=" + s.Selector)
	fb.add("t=" + t)
	var prefix strings.Builder
	for i, set := range sets {
		prefix.WriteString(relaxedHeader(set.aar.name, set.aar.value))
		prefix.WriteString(relaxedHeader(set.ams.name, set.ams.value))
		if i < len(sets)-1 {
			prefix.WriteString(relaxedHeader(set.seal.name, set.seal.value))
		}
	}
	return s.finish(&fb, hdrSeal, prefix.String())
}

// finish adds "b=", signs prefix followed by the field so far, and appends
// the folded signature.
func (s Sealer) finish(fb *folder, name, prefix string) (*field, error) {
	fb.add("b=")
	f := &field{name: name, value: fb.String()}
	signed := prefix + strings.TrimSuffix(relaxedHeader(name, f.value), "\r\n")
	sig, err := sign(s.Key, digestOf(signed))
	if err != nil {
		return nil, fmt.Errorf("arc: signing %s: %w", name, err)
	}
	fb.appendFolded(base64.StdEncoding.EncodeToString(sig))
	f.value = fb.String() + "\r\n"
	return f, nil
}

// presentHeaders keeps the names of want that occur in fields, each as many
// times as it occurs; From is always kept.
func presentHeaders(fields []field, want []string) []string {
	var names []string
	for _, w := range want {
		count := 0
		for _, f := range fields {
			if strings.EqualFold(f.name, w) {
				count++
			}
		}
		if count == 0 && strings.EqualFold(w, "From") {
			count = 1
		}
		for range count {
			names = append(names, strings.ToLower(w))
		}
	}
	return names
}

func hasFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// folder writes a tag list as a folded header value: tags separated by
// "; ", lines kept under about 78 octets by folding with CRLF and a space.
type folder struct {
	b    strings.Builder
	line int // length of the current line, the field name counted
}

const foldWidth = 76

func (f *folder) String() string { return f.b.String() }

func (f *folder) add(tag string) {
	if f.b.Len() == 0 {
		f.line = len("ARC-Message-Signature:")
		f.write(" " + tag)
		return
	}
	f.b.WriteByte(';')
	f.line++
	if f.line+1+len(tag) > foldWidth {
		f.b.WriteString("\r\n")
		f.line = 0
	}
	f.write(" " + tag)
}

// addList adds a colon-separated list tag, folding after a colon when the
// line gets long.
func (f *folder) addList(prefix string, items []string) {
	f.add(prefix + items[0])
	for _, it := range items[1:] {
		f.b.WriteByte(':')
		f.line++
		if f.line+len(it) > foldWidth {
			f.b.WriteString("\r\n ")
			f.line = 1
		}
		f.write(it)
	}
}

// appendFolded appends a base64 value in pieces that fit the lines.
func (f *folder) appendFolded(v string) {
	for v != "" {
		room := foldWidth - f.line
		if room < 8 {
			f.b.WriteString("\r\n ")
			f.line = 1
			continue
		}
		n := min(room, len(v))
		f.write(v[:n])
		v = v[n:]
	}
}

// foldWords folds a field value before spaces so that lines stay under
// about 78 octets where the words allow; first is the length of the field
// name and colon on the first line. Folding adds only CRLFs, which
// unfolding and relaxed canonicalization take away again.
func foldWords(v string, first int) string {
	var b strings.Builder
	line := first
	for i, w := range strings.Split(v, " ") {
		if i > 0 {
			if line > first && line+1+len(w) > foldWidth {
				b.WriteString("\r\n")
				line = 0
			}
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	return b.String()
}

func (f *folder) write(s string) {
	f.b.WriteString(s)
	f.line += len(s)
}
