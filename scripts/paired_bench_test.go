package scripts

import (
	"testing"
	"time"

	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// BenchmarkAcceptLuaPaired is BenchmarkAcceptWithLua against
// BenchmarkAcceptNoHooks in one process (smtptest.BenchPaired): two
// servers, one without hooks and one with the script, take turns, so
// that both meet the same load of a shared machine. It reports
// lua-extra-cpu-µs/msg and lua/nohooks-msgs/s, and their turn medians.
func BenchmarkAcceptLuaPaired(b *testing.B) {
	s := loadBenchScript(b)
	smtptest.BenchPaired(b, "nohooks", "lua", hook.NewChain(nil, hook.Entry{Handler: s, OnError: hook.OnErrorDefer, Timeout: time.Second}))
}
