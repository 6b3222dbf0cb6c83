package scripts

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// BenchmarkAcceptLuaPaired is BenchmarkAcceptWithLua against
// BenchmarkAcceptNoHooks in one process (smtptest.BenchPaired): two
// servers, one without hooks and one with the script, take turns, so
// that both meet the same load of a shared machine. It reports
// lua-extra-cpu-µs/msg and lua/nohooks-msgs/s, and their turn medians.
func BenchmarkAcceptLuaPaired(b *testing.B) { benchPaired(b, "lua", loadBenchScript(b)) }

// BenchmarkAcceptGoPaired is BenchmarkAcceptLuaPaired with a Go handler
// doing what the script does (goBenchHook), through the same chain: its
// go-extra-cpu-µs/msg and go/nohooks-msgs/s are what the chain, the
// server's dispatch and the hook's work cost without any Lua, the floor
// under the Lua pair's figures whatever the Lua host does.
func BenchmarkAcceptGoPaired(b *testing.B) { benchPaired(b, "go", newGoBenchHook()) }

// BenchmarkAcceptLuaPairedDurable is BenchmarkAcceptLuaPaired with each
// server on a durable spool (smtptest.BenchPairedDurable): its
// lua/nohooks-msgs/s is the measure, the pair's cost to durable
// accept throughput, in one run.
func BenchmarkAcceptLuaPairedDurable(b *testing.B) {
	smtptest.BenchPairedDurable(b, "nohooks", "lua", benchChain(loadBenchScript(b)))
}

// benchPaired runs the paired benchmark of a server with h (whose
// metrics are named name) against one without hooks.
func benchPaired(b *testing.B, name string, h hook.Handler) {
	smtptest.BenchPaired(b, "nohooks", name, benchChain(h))
}

// benchChain is the paired benchmarks' chain: h at every stage it
// answers, under a timeout, as a configured hook runs.
func benchChain(h hook.Handler) *hook.Chain {
	return hook.NewChain(nil, hook.Entry{Handler: h, OnError: hook.OnErrorDefer, Timeout: time.Second})
}

// goBenchHook is benchScript in Go: at rcpt, Accept for the 100 known
// recipients; at data, a read of the Subject field.
type goBenchHook struct{ known map[string]bool }

func newGoBenchHook() *goBenchHook {
	h := &goBenchHook{known: make(map[string]bool)}
	for i := 1; i <= 100; i++ {
		h.known[fmt.Sprintf("user%d@example.test", i)] = true
	}
	return h
}

func (h *goBenchHook) Name() string { return "go.bench" }

func (h *goBenchHook) Stages() []sdk.Stage { return []sdk.Stage{sdk.StageRcpt, sdk.StageData} }

func (h *goBenchHook) Handle(ctx context.Context, req *hook.Request) (sdk.Decision, sdk.Effects, error) {
	switch req.Stage {
	case sdk.StageRcpt:
		if h.known[req.Rcpt.Address.String()] {
			return sdk.Decision{Verdict: sdk.Accept}, sdk.Effects{}, nil
		}
	case sdk.StageData:
		var fields []sdk.HeaderField
		var err error
		if v, ok := req.Message.(interface {
			SharedHeader() ([]sdk.HeaderField, error)
		}); ok {
			fields, err = v.SharedHeader() // the server's view: no copy
		} else {
			fields, err = req.Message.Header()
		}
		if err != nil {
			return sdk.Decision{}, sdk.Effects{}, err
		}
		for _, f := range fields {
			if strings.EqualFold(f.Name, "Subject") {
				break
			}
		}
	}
	return sdk.Decision{}, sdk.Effects{}, nil
}
