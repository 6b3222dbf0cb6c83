// Command hostplugin is the plugin of hostsvc's tests: its command hook
// runs one host-service call described by the command's argument and
// answers continue with the result as the reason, exactly as the Lua
// script in adapters_test.go does:
//
//	get|set|incr|delete <durable|ephemeral> <key> [value|delta] [ttl seconds]
//	log <level> <message>
//	mx|a|txt|ptr <name>
//
// fields separated by tabs; results "ok[ <value>]", "nil" or "err <error>".
package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mailgate/gateway/sdk"
)

type hostPlugin struct{ host sdk.Host }

func (p *hostPlugin) Info() sdk.Info { return sdk.Info{Name: "hostsvc-test", Version: "1"} }

func (p *hostPlugin) Configure(ctx context.Context, _ map[string]any, host sdk.Host) error {
	p.host = host
	return nil
}

func (p *hostPlugin) Command(ctx context.Context, r *sdk.Request) (sdk.Decision, sdk.Effects, error) {
	res, err := p.run(ctx, strings.Split(r.Arg, "\t"))
	if err != nil {
		res = "err " + err.Error()
	}
	return sdk.ContinueDecision().WithReason(res), sdk.Effects{}, nil
}

func (p *hostPlugin) run(ctx context.Context, a []string) (string, error) {
	for len(a) < 5 {
		a = append(a, "")
	}
	kv := p.host.Durable()
	if a[1] == "ephemeral" {
		kv = p.host.Ephemeral()
	}
	switch a[0] {
	case "get":
		v, ok, err := kv.Get(ctx, a[2])
		if err != nil || !ok {
			return "nil", err
		}
		return "ok " + v, nil
	case "set":
		return "ok", kv.Set(ctx, a[2], a[3], seconds(a[4]))
	case "incr":
		delta, _ := strconv.ParseInt(a[3], 10, 64)
		n, err := kv.Incr(ctx, a[2], delta, seconds(a[4]))
		return "ok " + strconv.FormatInt(n, 10), err
	case "delete":
		return "ok", kv.Delete(ctx, a[2])
	case "log":
		return "ok", p.host.Log(ctx, a[1], a[2], nil)
	}
	return p.lookup(ctx, a[0], a[1])
}

func (p *hostPlugin) lookup(ctx context.Context, op, name string) (string, error) {
	var vs []string
	var err error
	switch op {
	case "mx":
		var mxs []sdk.MX
		mxs, err = p.host.LookupMX(ctx, name)
		for _, mx := range mxs {
			vs = append(vs, fmt.Sprintf("%d %s", mx.Preference, mx.Host))
		}
	case "a":
		vs, err = p.host.LookupIP(ctx, name)
	case "txt":
		vs, err = p.host.LookupTXT(ctx, name)
	case "ptr":
		vs, err = p.host.LookupPTR(ctx, name)
	default:
		return "", fmt.Errorf("hostplugin: unknown op %q", op)
	}
	return "ok " + strings.Join(vs, ","), err
}

func seconds(s string) time.Duration {
	f, _ := strconv.ParseFloat(s, 64)
	return time.Duration(f * float64(time.Second))
}

var (
	_ sdk.Configurer  = (*hostPlugin)(nil)
	_ sdk.CommandHook = (*hostPlugin)(nil)
)

func main() { sdk.Serve(&hostPlugin{}) }
