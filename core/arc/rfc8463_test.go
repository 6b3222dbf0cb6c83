package arc

import (
	"context"
	"strings"
	"testing"
)

// RFC 8463 Appendix A: a message signed with ed25519-sha256 and with
// rsa-sha256, relaxed/relaxed, over-signed fields. An ARC-Message-Signature
// is a DKIM signature with i= an instance, so verifyAMS checks both as
// published: canonicalization, field selection, b= blanking and both
// algorithms against vectors that were not made here.
const rfc8463Message = "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n" +
	" d=football.example.com; i=@football.example.com;\r\n" +
	" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n" +
	" subject : date : message-id : from : subject : date;\r\n" +
	" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n" +
	" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n" +
	" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n" +
	"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n" +
	" d=football.example.com; i=@football.example.com;\r\n" +
	" q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n" +
	" date : message-id : from : subject : date;\r\n" +
	" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n" +
	" b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n" +
	" DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n" +
	" dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n" +
	"From: Joe SixPack <joe@football.example.com>\r\n" +
	"To: Suzie Q <suzie@shopping.example.net>\r\n" +
	"Subject: Is dinner ready?\r\n" +
	"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n" +
	"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n" +
	"\r\n" +
	"Hi.\r\n" +
	"\r\n" +
	"We lost the game.  Are you hungry yet?\r\n" +
	"\r\n" +
	"Joe.\r\n" +
	"\r\n"

func TestRFC8463Vectors(t *testing.T) {
	w := newWorld(t, map[string]string{
		"brisbane._domainkey.football.example.com": "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		"test._domainkey.football.example.com": "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR" +
			"iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC" +
			"DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3" +
			"Ip3G+2kryOTIKT+l/K4w3QIDAQAB",
	})
	for _, c := range []struct{ name, msg, want string }{
		{"as published", rfc8463Message, ""},
		{"body changed", strings.Replace(rfc8463Message, "hungry", "angry", 1), "body hash does not match"},
		{"subject changed", strings.Replace(rfc8463Message, "dinner", "lunch", 1), "does not verify"},
	} {
		fields, body := splitMessage([]byte(c.msg))
		v := &verifier{fields: fields, body: body, keys: keyCache{lookup: w.res.TXT}}
		for i, alg := range []string{"ed25519", "rsa"} {
			tags, err := parseTags(fields[i].value)
			if err != nil {
				t.Fatal(err)
			}
			err = v.verifyAMS(context.Background(), &arcSet{instance: 1, ams: &fields[i], amsTags: tags})
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Errorf("%s, %s: %v, want %q", c.name, alg, err, c.want)
			}
		}
	}
}
