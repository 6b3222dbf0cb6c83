// Command testplugin is the plugin the pluginhost tests run: a rcpt hook
// whose answer depends on the recipient's local part, a data hook that
// reports what it saw of the message, and a transport.
//
//	blocked@…  550 5.7.1 "<greeting>: blocked"
//	hang@…     never answers (ignores the deadline, like a stuck plugin)
//	crash@…    exits the process
//	error@…    returns an error
//	count@…    accepts, with the count from the host's KV in the message
//	pwd@…      rejects with its working folder as the message
//	channel@…  rejects with its call channel's variable as the message
//	anything   continues
//
// Its config: greeting (string, required), limit (number, default 10),
// outdir (string: where the transport writes messages), and greeting =
// "refuse" makes Configure fail on that field.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/mailgate/gateway/sdk"
)

type testPlugin struct {
	greeting string
	limit    float64
	outdir   string
	host     sdk.Host
}

func (p *testPlugin) Info() sdk.Info {
	return sdk.Info{
		Name:    "test",
		Version: "1.2.3",
		Schema: []sdk.ConfigField{
			{Name: "greeting", Type: sdk.TypeString, Required: true, Description: "the reject text's prefix"},
			{Name: "limit", Type: sdk.TypeNumber, Default: 10.0, Description: "a number"},
			{Name: "outdir", Type: sdk.TypeString, Description: "where the transport writes"},
		},
		Transports: []string{"testtransport"},
	}
}

func (p *testPlugin) Configure(ctx context.Context, config map[string]any, host sdk.Host) error {
	p.greeting, _ = config["greeting"].(string)
	p.limit, _ = config["limit"].(float64)
	p.outdir, _ = config["outdir"].(string)
	p.host = host
	if p.greeting == "refuse" {
		return sdk.ConfigErrors{{Field: "greeting", Message: `"refuse" is refused`}}
	}
	return nil
}

func (p *testPlugin) Rcpt(ctx context.Context, r *sdk.Request) (sdk.Decision, sdk.Effects, error) {
	switch r.Rcpt.Address.Local {
	case "blocked":
		d := sdk.RejectDecision(550, sdk.EnhancedCode{5, 7, 1}, p.greeting+": blocked")
		return d.WithReason(fmt.Sprintf("limit %g", p.limit)), sdk.Effects{}, nil
	case "hang":
		select {} // a stuck plugin: not even the deadline stops it
	case "crash":
		os.Exit(3)
	case "error":
		fmt.Fprintln(os.Stderr, "testplugin: about to fail")
		return sdk.Decision{}, sdk.Effects{}, errors.New("testplugin: boom")
	case "channel":
		return sdk.RejectDecision(550, sdk.EnhancedCode{5, 7, 1}, sdk.CallsFDEnv+"="+os.Getenv(sdk.CallsFDEnv)), sdk.Effects{}, nil
	case "pwd":
		wd, err := os.Getwd()
		if err != nil {
			return sdk.Decision{}, sdk.Effects{}, err
		}
		return sdk.RejectDecision(550, sdk.EnhancedCode{5, 7, 1}, wd), sdk.Effects{}, nil
	case "count":
		n, err := p.host.Durable().Incr(ctx, "count", 1, 0)
		if err != nil {
			return sdk.Decision{}, sdk.Effects{}, err
		}
		return sdk.Decision{Verdict: sdk.Accept, Code: 250, Message: "count " + strconv.FormatInt(n, 10)}, sdk.Effects{}, nil
	}
	return sdk.Decision{}, sdk.Effects{}, nil
}

func (p *testPlugin) Data(ctx context.Context, r *sdk.Request) (sdk.Decision, sdk.Effects, error) {
	subject := ""
	for _, f := range r.Message.Header {
		if f.Name == "Subject" {
			subject = f.Value
		}
	}
	notes := map[string]string{
		"plugin.test/subject":   subject,
		"plugin.test/body":      string(r.Message.Body),
		"plugin.test/truncated": strconv.FormatBool(r.Message.Truncated),
		"plugin.test/size":      strconv.FormatInt(r.Message.Size, 10),
		"plugin.test/client":    r.Session.ClientIP,
		"plugin.test/sender":    r.Txn.Sender.String(),
	}
	if a := r.Message.Auth; a != nil {
		notes["plugin.test/auth"] = a.SPF.Result + " " + a.DMARC.Result + "/" + a.DMARC.Policy + "/" + a.DMARC.Domain +
			" dkim=" + strconv.Itoa(len(a.DKIM)) + " arc=" + a.ARC.Result
	}
	return sdk.Decision{}, sdk.Effects{
		AddHeaders: []sdk.HeaderField{{Name: "X-Test-Plugin", Value: p.greeting}},
		Notes:      notes,
	}, nil
}

// Deliver delivers to every recipient but fail@ (permanent) and later@
// (temporary), writing the message to outdir/<id> when outdir is set.
func (p *testPlugin) Deliver(ctx context.Context, d *sdk.Delivery) ([]sdk.DeliveryResult, error) {
	if p.outdir != "" {
		if err := os.WriteFile(filepath.Join(p.outdir, d.ID), d.Content, 0o600); err != nil {
			return nil, err
		}
	}
	out := make([]sdk.DeliveryResult, len(d.Recipients))
	for i, rc := range d.Recipients {
		switch rc.Address.Local {
		case "fail":
			out[i] = sdk.DeliveryResult{Outcome: sdk.Permanent, Code: 550, Enhanced: sdk.EnhancedCode{5, 1, 1}, Text: "no such user"}
		case "later":
			out[i] = sdk.DeliveryResult{Outcome: sdk.Temporary, Text: "try\r\nlater"}
		default:
			out[i] = sdk.DeliveryResult{Outcome: sdk.Delivered, Text: "stored by " + d.Transport, RemoteMTA: "test"}
		}
	}
	return out, nil
}

var (
	_ sdk.Describer  = (*testPlugin)(nil)
	_ sdk.Configurer = (*testPlugin)(nil)
	_ sdk.RcptHook   = (*testPlugin)(nil)
	_ sdk.DataHook   = (*testPlugin)(nil)
	_ sdk.Transport  = (*testPlugin)(nil)
)

func main() { sdk.Serve(&testPlugin{}) }
