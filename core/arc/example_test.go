package arc_test

import (
	"context"
	"crypto"
	"errors"
	"fmt"

	"github.com/mailgate/gateway/core/arc"
	"github.com/mailgate/gateway/core/resolver"
)

// The gateway's two moments: verify at data, seal when forwarding.
func Example() {
	var (
		ctx    = context.Background()
		msg    = []byte("From: a@origin.test\r\nSubject: hi\r\n\r\nbody\r\n")
		key    crypto.Signer // the arc_seal dkim block's key, parsed once
		res, _ = resolver.New(resolver.Options{})
	)

	// At data: the chain as received; a TempError wants 451 4.7.5.
	chain, err := arc.Verify(ctx, msg, res.TXT)
	if err != nil {
		fmt.Println("defer:", err)
		return
	}
	ar := "mx.example.test; spf=pass smtp.mailfrom=origin.test; " + chain.ResInfo()
	msg = append([]byte("Authentication-Results: "+ar+"\r\n"), msg...)

	// When the message leaves for another domain, after its last rewrite.
	payload, cv, ok := arc.FromAuthResults(msg, "mx.example.test")
	if !ok {
		return // not verified here: nothing to vouch for
	}
	sealer := arc.Sealer{Domain: "example.test", Selector: "s1", Key: key}
	set, err := sealer.Seal(msg, cv, payload)
	switch {
	case errors.Is(err, arc.ErrChainEnded):
		// forward as it is
	case err != nil:
		fmt.Println("seal:", err)
	default:
		msg = append(set, msg...)
	}
	_ = msg
}
