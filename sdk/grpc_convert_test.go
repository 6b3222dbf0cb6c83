package sdk

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mailgate/gateway/sdk/internal/pb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// wire sends m through the protobuf encoding, as the gRPC path does.
func wire[M proto.Message](t *testing.T, m M) M {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	out := m.ProtoReflect().New().Interface().(M)
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return out
}

var received = time.Date(2025, 6, 7, 8, 9, 10, 11, time.UTC)

func fullTxn() *Txn {
	return &Txn{
		Sender: Address{Local: "a", Domain: "example.net"},
		Recipients: []Recipient{
			{Address: Address{Local: "b", Domain: "example.org"}, Notify: []string{"SUCCESS", "FAILURE"}, ORCPT: "rfc822;b@example.org"},
			{Address: Address{Local: "c", Domain: "example.org"}},
		},
		Size: 1234, Body: "8BITMIME", SMTPUTF8: true, Ret: "HDRS", EnvID: "env-1", Received: received,
	}
}

func TestRequestRoundTrip(t *testing.T) {
	rcpt := Recipient{Address: Address{Local: "b", Domain: "example.org"}, Notify: []string{"NEVER"}}
	tests := []struct {
		name string
		in   *Request
	}{
		{"zero", &Request{}},
		{"connect", &Request{Stage: StageConnect, Session: &Session{ID: "s1", Listener: "smtp", ClientIP: "192.0.2.1", Port: 2525, HELO: "h", ESMTP: true, TLS: true, AuthUser: "u"}}},
		{"zero session", &Request{Stage: StageHelo, Session: &Session{}}},
		{"rcpt", &Request{Stage: StageRcpt, Session: &Session{ID: "s"}, Txn: fullTxn(), Rcpt: &rcpt,
			Notes: map[string]string{"lua.relay/score": "5", "plugin.x/empty": ""}}},
		{"zero rcpt", &Request{Stage: StageRcpt, Rcpt: &Recipient{}, Txn: &Txn{}}},
		{"command", &Request{Stage: StageCommand, Command: "VRFY", Arg: "postmaster"}},
		{"data", &Request{Stage: StageData, Txn: fullTxn(), Message: &Message{
			Header: []HeaderField{{"From", "a@example.net"}, {"X-Empty", ""}}, Body: []byte("body\r\n"), Truncated: true, Size: 99,
		}}},
		{"empty message", &Request{Stage: StageData, Message: &Message{}}},
		{"auth results", &Request{Stage: StageData, Message: &Message{Size: 9, Auth: &AuthResults{
			SPF: SPFResult{Result: "pass", Domain: "example.net"},
			DKIM: []DKIMResult{{Result: "pass", Domain: "example.net", Selector: "s1"},
				{Result: "fail", Domain: "list.example", Selector: "2026"}},
			DMARC: DMARCResult{Result: "fail", Policy: "quarantine", Domain: "example.net"},
			ARC:   ARCResult{Result: "none"},
		}}}},
		{"zero auth results", &Request{Stage: StageData, Message: &Message{Auth: &AuthResults{}}}},
		{"predelivery", &Request{Stage: StagePredelivery, Txn: fullTxn(), Arg: "example.org", Message: &Message{Size: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fromPBRequest(wire(t, toPBRequest(tt.in)))
			if diff := cmp.Diff(tt.in, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("nil", func(t *testing.T) {
		if got := fromPBRequest(toPBRequest(nil)); !cmp.Equal(got, &Request{}) {
			t.Errorf("nil request: got %+v, want the zero Request", got)
		}
	})
}

func TestHandleResponseRoundTrip(t *testing.T) {
	sender := Address{Local: "srs0", Domain: "example.net"}
	tests := []struct {
		name string
		d    Decision
		e    Effects
	}{
		{"zero", Decision{}, Effects{}},
		{"reject", RejectDecision(550, EnhancedCode{5, 7, 1}, "no").WithReason("list x"), Effects{}},
		{"defer disconnect", Decision{Verdict: Defer, Code: 421, Enhanced: EnhancedCode{4, 7, 0}, Disconnect: true}, Effects{}},
		{"accept 354", Decision{Verdict: Accept, Code: 354}, Effects{}},
		{"drop", DropDecision(), Effects{}},
		{"enhanced 999", Decision{Verdict: Reject, Enhanced: EnhancedCode{5, 999, 999}}, Effects{}},
		{"all effects", AcceptDecision(), Effects{
			AddHeaders:    []HeaderField{{"X-A", "1"}, {"X-B", ""}},
			RemoveHeaders: []string{"X-Spam"},
			Recipients:    []Address{{Local: "x", Domain: "example.org"}, {}},
			Sender:        &sender,
			Body:          []byte("new body"),
			Notes:         map[string]string{"dnsbl/list": "zen", "empty": ""},
			Skip:          []string{"lua.relay"},
			Route:         &Route{Transport: "lmtp", Via: "127.0.0.1:24"},
			ReplyLines:    []string{"one", "two"},
		}},
		{"null sender", Decision{}, Effects{Sender: &Address{}}},
		{"empty body is present", Decision{}, Effects{Body: []byte{}}},
		{"zero route is present", Decision{}, Effects{Route: &Route{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, e, err := fromPBHandleResponse(wire(t, toPBHandleResponse(tt.d, tt.e)))
			if err != nil {
				t.Fatalf("fromPB: %v", err)
			}
			if diff := cmp.Diff(tt.d, d); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			// Body: nil and empty differ (presence); everything else
			// can't tell nil from empty on the wire.
			if (tt.e.Body == nil) != (e.Body == nil) {
				t.Errorf("body presence: got %#v, want %#v", e.Body, tt.e.Body)
			}
			if diff := cmp.Diff(tt.e, e, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("effects (-want +got):\n%s", diff)
			}
			if tt.e.IsZero() != e.IsZero() {
				t.Errorf("IsZero: got %v, want %v", e.IsZero(), tt.e.IsZero())
			}
		})
	}
}

func TestDecisionFromBadWire(t *testing.T) {
	tests := []struct {
		name string
		in   *pb.Decision
	}{
		{"unknown verdict", &pb.Decision{Verdict: 9}},
		{"negative verdict", &pb.Decision{Verdict: -1}},
		{"two-part enhanced", &pb.Decision{Verdict: pb.Verdict_VERDICT_REJECT, Enhanced: []uint32{5, 7}}},
		{"enhanced overflow", &pb.Decision{Verdict: pb.Verdict_VERDICT_REJECT, Enhanced: []uint32{5, 70000, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := fromPBDecision(tt.in); !errors.Is(err, ErrProtocol) {
				t.Errorf("got %v, want ErrProtocol", err)
			}
		})
	}
	if d, err := fromPBDecision(nil); err != nil || d != (Decision{}) {
		t.Errorf("nil decision: got %+v, %v; want Continue", d, err)
	}
}

func TestInfoRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   Info
	}{
		{"zero", Info{}},
		{"full", Info{
			Name: "aliases", Version: "1.2.3", ProtocolVersions: []int{1, 2},
			Stages: []Stage{StageRcpt, StageData},
			Schema: []ConfigField{
				{Name: "file", Type: TypeString, Required: true, Description: "path"},
				{Name: "limit", Type: TypeNumber, Default: 2.5},
				{Name: "strict", Type: TypeBool, Default: false},
				{Name: "lists", Type: TypeList, Default: []string{"a", "b"}},
				{Name: "empty list", Type: TypeList, Default: []string{}},
				{Name: "map", Type: TypeMap, Default: map[string]string{"k": "v"}},
				{Name: "empty", Type: TypeString, Default: ""},
			},
			Transports: []string{"http"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := toPBInfo(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := fromPBInfo(wire(t, p))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.in, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("integer default arrives as float64", func(t *testing.T) {
		p, _ := toPBInfo(Info{Schema: []ConfigField{{Name: "n", Type: TypeNumber, Default: 3}}})
		got, _ := fromPBInfo(p)
		if d := got.Schema[0].Default; d != 3.0 {
			t.Errorf("got %#v, want float64 3", d)
		}
	})
	t.Run("unencodable default", func(t *testing.T) {
		if _, err := toPBInfo(Info{Schema: []ConfigField{{Name: "n", Type: TypeNumber, Default: math.NaN()}}}); err == nil {
			t.Error("NaN default: want an error")
		}
	})
}

func TestConfigRoundTrip(t *testing.T) {
	schema := []ConfigField{
		{Name: "s", Type: TypeString}, {Name: "n", Type: TypeNumber}, {Name: "b", Type: TypeBool},
		{Name: "l", Type: TypeList}, {Name: "m", Type: TypeMap}, {Name: "el", Type: TypeList},
	}
	in := map[string]any{
		"s": "x", "n": 3, "b": true, "l": []string{"a", "b"}, "m": map[string]string{"k": "v"}, "el": []string{},
		"unknown list": []any{"x"}, "mixed": []any{"x", 1.0},
	}
	want := map[string]any{
		"s": "x", "n": 3.0, "b": true, "l": []string{"a", "b"}, "m": map[string]string{"k": "v"}, "el": []string{},
		"unknown list": []string{"x"}, "mixed": []any{"x", 1.0},
	}
	b, err := toPBConfig(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fromPBConfig(b, schema)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"[1]", "nope", `"s"`} {
		if _, err := fromPBConfig([]byte(bad), schema); !errors.Is(err, ErrProtocol) {
			t.Errorf("config %q: got %v, want ErrProtocol", bad, err)
		}
	}
	for _, empty := range []string{"", "null", "{}"} {
		got, err := fromPBConfig([]byte(empty), schema)
		if err != nil || got == nil || len(got) != 0 {
			t.Errorf("config %q: got %v, %v; want an empty map", empty, got, err)
		}
	}
}

func TestConfigErrorsRoundTrip(t *testing.T) {
	in := ConfigErrors{{Field: "a", Message: "bad"}, {Field: "", Message: "whole block"}}
	got := fromPBConfigErrors(wire(t, &pb.ConfigureResponse{Errors: toPBConfigErrors(in)}).GetErrors())
	if diff := cmp.Diff(in, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if got := fromPBConfigErrors(nil); got != nil {
		t.Errorf("no errors: got %v, want nil", got)
	}
}

func TestDeliveryRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   *Delivery
	}{
		{"zero", &Delivery{}},
		{"full", &Delivery{ID: "q1", Txn: *fullTxn(), Recipients: fullTxn().Recipients, Domain: "example.org",
			Transport: "http", Via: "10.0.0.1:80", Content: []byte("From: a\r\n\r\nhi\r\n")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fromPBDelivery(wire(t, toPBDelivery(tt.in)))
			if diff := cmp.Diff(tt.in, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
	results := []DeliveryResult{
		{},
		{Outcome: Delivered, Code: 250, Enhanced: EnhancedCode{2, 0, 0}, Text: "ok", RemoteMTA: "mx.example.org"},
		{Outcome: Permanent, Code: 550, Enhanced: EnhancedCode{5, 1, 1}, Text: "no such user"},
	}
	got, err := fromPBDeliveryResults(wire(t, &pb.DeliverResponse{Results: toPBDeliveryResults(results)}).GetResults())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(results, got); diff != "" {
		t.Errorf("results round trip (-want +got):\n%s", diff)
	}
	if _, err := fromPBDeliveryResults([]*pb.DeliveryResult{{Outcome: 7}}); !errors.Is(err, ErrProtocol) {
		t.Errorf("unknown outcome: got %v, want ErrProtocol", err)
	}
}

func TestMXRoundTrip(t *testing.T) {
	in := []MX{{Host: "mx1.example.org", Preference: 10}, {Host: ".", Preference: 0}, {Host: "max", Preference: math.MaxUint16}}
	got, err := fromPBMX(wire(t, &pb.LookupResponse{Mx: toPBMX(in)}).GetMx())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if _, err := fromPBMX([]*pb.MX{{Preference: math.MaxUint16 + 1}}); !errors.Is(err, ErrProtocol) {
		t.Errorf("preference overflow: got %v, want ErrProtocol", err)
	}
}

func TestSessionPortClamped(t *testing.T) {
	got := fromPBSession(toPBSession(&Session{Port: math.MaxInt32 + 10}))
	if got.Port != math.MaxInt32 {
		t.Errorf("port: got %d, want %d", got.Port, math.MaxInt32)
	}
}

func TestTxnTimestampOutOfRange(t *testing.T) {
	for _, ts := range []*timestamppb.Timestamp{nil, {Seconds: math.MaxInt64}, {Nanos: -1}} {
		if got := fromPBTxn(&pb.Txn{Received: ts}); !got.Received.IsZero() {
			t.Errorf("timestamp %v: got %v, want the zero time", ts, got.Received)
		}
	}
}

// FuzzFromPB feeds arbitrary bytes, decoded as each wire message, to the
// pb → sdk conversions: they may return errors, never panic.
func FuzzFromPB(f *testing.F) {
	seeds := []proto.Message{
		toPBRequest(&Request{Stage: StageData, Session: &Session{ID: "s"}, Txn: fullTxn(), Message: &Message{Body: []byte("x")}}),
		toPBHandleResponse(RejectDecision(550, EnhancedCode{5, 7, 1}, "no"), Effects{Sender: &Address{}, Body: []byte{}, Notes: map[string]string{"a": "b"}}),
		&pb.GetInfoResponse{Info: &pb.Info{Name: "x", Schema: []*pb.ConfigField{{Name: "n", Type: TypeNumber, DefaultJson: []byte("1")}}}},
		&pb.ConfigureRequest{ConfigJson: []byte(`{"a":["x"],"b":{"k":"v"}}`)},
		&pb.DeliverRequest{Delivery: toPBDelivery(&Delivery{ID: "q", Txn: *fullTxn()})},
		&pb.DeliverResponse{Results: []*pb.DeliveryResult{{Outcome: 1, Enhanced: []uint32{2, 0, 0}}}},
		&pb.LookupResponse{Mx: []*pb.MX{{Host: "mx", Preference: 10}}},
	}
	for _, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var req pb.HandleRequest
		if proto.Unmarshal(b, &req) == nil {
			_ = fromPBRequest(&req)
		}
		var resp pb.HandleResponse
		if proto.Unmarshal(b, &resp) == nil {
			if d, _, err := fromPBHandleResponse(&resp); err == nil {
				_ = d.Validate(StageData) // must not panic either
			}
		}
		var info pb.GetInfoResponse
		if proto.Unmarshal(b, &info) == nil {
			if i, err := fromPBInfo(info.GetInfo()); err == nil {
				_ = i.ValidateSchema()
				_ = i.ValidateConfig(i.ApplyDefaults(nil))
			}
		}
		var cfg pb.ConfigureRequest
		if proto.Unmarshal(b, &cfg) == nil {
			_, _ = fromPBConfig(cfg.GetConfigJson(), []ConfigField{{Name: "a", Type: TypeList}, {Name: "b", Type: TypeMap}})
		}
		var cr pb.ConfigureResponse
		if proto.Unmarshal(b, &cr) == nil {
			_ = fromPBConfigErrors(cr.GetErrors())
		}
		var dreq pb.DeliverRequest
		if proto.Unmarshal(b, &dreq) == nil {
			_ = fromPBDelivery(dreq.GetDelivery())
		}
		var dresp pb.DeliverResponse
		if proto.Unmarshal(b, &dresp) == nil {
			_, _ = fromPBDeliveryResults(dresp.GetResults())
		}
		var lr pb.LookupResponse
		if proto.Unmarshal(b, &lr) == nil {
			_, _ = fromPBMX(lr.GetMx())
		}
	})
}
