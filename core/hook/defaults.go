package hook

import "github.com/mailgate/gateway/sdk"

// Reply is the SMTP reply a decision stands for once stage defaults are
// filled in.
type Reply struct {
	Code       int
	Enhanced   sdk.EnhancedCode
	Message    string
	Disconnect bool
}

// DefaultReply fills in the stage defaults of STYLE.md §3.2 for a reject or
// defer decision (and for drop at connect and helo, which close the
// connection). Accept and Continue have no reply of their own: the server
// answers as it would without hooks.
func DefaultReply(stage sdk.Stage, d sdk.Decision) Reply {
	r := Reply{Code: d.Code, Enhanced: d.Enhanced, Message: d.Message, Disconnect: d.Disconnect}
	var code int
	var enh sdk.EnhancedCode
	var msg string
	switch d.Verdict {
	case sdk.Reject:
		code, enh, msg = 550, sdk.EnhancedCode{5, 7, 1}, "Rejected by policy"
		switch stage {
		case sdk.StageConnect:
			code, r.Disconnect = 554, true
		case sdk.StageCommand, sdk.StageData:
			code = 554
		case sdk.StageAuth:
			code, enh, msg = 535, sdk.EnhancedCode{5, 7, 8}, "Authentication credentials invalid"
		}
	case sdk.Defer:
		code, enh, msg = 451, sdk.EnhancedCode{4, 7, 1}, "Try again later"
		switch stage {
		case sdk.StageConnect:
			code, enh, r.Disconnect = 421, sdk.EnhancedCode{4, 7, 0}, true
		case sdk.StageAuth:
			code, enh, msg = 454, sdk.EnhancedCode{4, 7, 0}, "Temporary authentication failure"
		}
	case sdk.Drop:
		if stage == sdk.StageConnect || stage == sdk.StageHelo {
			code, enh, msg, r.Disconnect = 421, sdk.EnhancedCode{4, 7, 0}, "Closing connection", true
		}
	}
	if r.Code == 0 {
		r.Code = code
	}
	if r.Enhanced.IsZero() {
		r.Enhanced = enh
		// A code given without an enhanced code keeps the class consistent.
		if r.Code/100 != int(enh[0]) && r.Code >= 200 {
			r.Enhanced = sdk.EnhancedCode{uint16(r.Code / 100), 0, 0}
		}
	}
	if r.Message == "" {
		r.Message = msg
	}
	return r
}
