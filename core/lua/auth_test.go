package lua_test

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/sdk"
)

func testAuth() *sdk.AuthResults {
	return &sdk.AuthResults{
		SPF: sdk.SPFResult{Result: "softfail", Domain: "sender.example"},
		DKIM: []sdk.DKIMResult{
			{Result: "pass", Domain: "list.example", Selector: "s1"},
			{Result: "fail", Domain: "sender.example", Selector: "2026"},
		},
		DMARC: sdk.DMARCResult{Result: "fail", Policy: "quarantine", Domain: "sender.example"},
		ARC:   sdk.ARCResult{Result: "none"},
	}
}

// TestCtxAuth: ctx.auth has every result of the checks, and is nil when
// none were made.
func TestCtxAuth(t *testing.T) {
	s := load(t, `
function on_data(ctx)
  local a = ctx.auth
  if not a then ctx:note("auth", "nil") return end
  local out = {"spf=" .. a.spf.result .. "/" .. a.spf.domain}
  for i, d in ipairs(a.dkim) do out[#out + 1] = "dkim" .. i .. "=" .. d.result .. "/" .. d.domain .. "/" .. d.selector end
  out[#out + 1] = "dmarc=" .. a.dmarc.result .. "/" .. a.dmarc.policy .. "/" .. a.dmarc.domain
  out[#out + 1] = "arc=" .. a.arc.result
  ctx:note("auth", table.concat(out, " "))
end
`)
	req := request(sdk.StageData)
	req.Auth = testAuth()
	_, eff := handle(t, s, req)
	const want = "spf=softfail/sender.example dkim1=pass/list.example/s1 dkim2=fail/sender.example/2026 " +
		"dmarc=fail/quarantine/sender.example arc=none"
	if got := eff.Notes["lua.t/auth"]; got != want {
		t.Errorf("ctx.auth:\n got %s\nwant %s", got, want)
	}
	_, eff = handle(t, s, request(sdk.StageData))
	if got := eff.Notes["lua.t/auth"]; got != "nil" {
		t.Errorf("without checks ctx.auth is %q, want nil", got)
	}
}

// TestDMARCQuarantineScript runs testdata/dmarc_quarantine.lua: what
// fails DMARC goes to the quarantine mailbox, marked, unless the partner's
// relay sent it; what passes, and what was not checked, is left alone.
func TestDMARCQuarantineScript(t *testing.T) {
	src, err := os.ReadFile("testdata/dmarc_quarantine.lua")
	if err != nil {
		t.Fatal(err)
	}
	s := load(t, string(src), lua.Options{Params: map[string]any{
		"partner_relays": []any{"203.0.113.25"},
		"quarantine":     "quarantine@example.test",
	}})
	pass := testAuth()
	pass.DMARC.Result = "pass"
	for _, tc := range []struct {
		name    string
		ip      string
		auth    *sdk.AuthResults
		quarant bool
	}{
		{"fails DMARC", "192.0.2.7", testAuth(), true},
		{"fails DMARC from the partner", "203.0.113.25", testAuth(), false},
		{"passes DMARC", "192.0.2.7", pass, false},
		{"not checked", "192.0.2.7", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := request(sdk.StageData)
			req.Session.ClientIP = netip.MustParseAddr(tc.ip)
			req.Auth = tc.auth
			_, eff := handle(t, s, req)
			var rcpts []string
			for _, a := range eff.Recipients {
				rcpts = append(rcpts, a.Local+"@"+a.Domain)
			}
			got := strings.Join(rcpts, ",")
			if !tc.quarant {
				if got != "" || len(eff.AddHeaders) != 0 {
					t.Errorf("left alone? recipients %q, headers %v", got, eff.AddHeaders)
				}
				return
			}
			if got != "quarantine@example.test" {
				t.Errorf("recipients %q, want the quarantine mailbox", got)
			}
			want := []sdk.HeaderField{{Name: "X-Quarantined", Value: "DMARC fail for sender.example"}}
			if len(eff.AddHeaders) != 1 || eff.AddHeaders[0] != want[0] {
				t.Errorf("headers %v, want %v", eff.AddHeaders, want)
			}
		})
	}
}
