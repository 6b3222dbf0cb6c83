package sdk

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/sdk/internal/pb"
	"google.golang.org/protobuf/proto"
)

// codecRequests are requests the lean codec writes: none, some and all
// of the fields, lengths over a one-byte varint, odd values.
func codecRequests() map[string]*Request {
	long := strings.Repeat("ä", 200)
	return map[string]*Request{
		"empty":   {},
		"bench":   benchRcptRequest(),
		"connect": {Stage: StageConnect, Session: &Session{ID: "x", ClientIP: "2001:db8::1", Port: 25, TLS: true, AuthUser: "bob", Listener: "mx"}},
		"all": {
			Stage:   StageRcpt,
			Session: &Session{ID: "s", Listener: "l", ClientIP: "192.0.2.1", Port: 587, HELO: long, ESMTP: true, TLS: true, AuthUser: "u"},
			Txn: &Txn{
				Sender: Address{Local: "a", Domain: "b.example"},
				Recipients: []Recipient{
					{Address: Address{Local: "r1", Domain: "d"}, Notify: []string{"SUCCESS", "FAILURE"}, ORCPT: "rfc822;r1@d"},
					{Address: Address{Local: long, Domain: "d"}},
				},
				Size: 1 << 40, Body: "8BITMIME", SMTPUTF8: true, Ret: "HDRS", EnvID: "e1",
				Received: time.Date(2026, 12, 7, 0, 1, 2, 345, time.UTC),
			},
			Rcpt:    &Recipient{Address: Address{Local: "r1", Domain: "d"}, Notify: []string{"NEVER"}},
			Command: "RCPT", Arg: long,
			Notes: map[string]string{"lua.a/x": "1", "plugin.b/y": long, "": ""},
		},
		"negative port":   {Session: &Session{Port: -1}},
		"port over int32": {Session: &Session{Port: 1 << 40}},
		"old received":    {Txn: &Txn{Received: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)}},
		"unix epoch":      {Txn: &Txn{Received: time.Unix(0, 0)}},
		"negative size":   {Txn: &Txn{Size: -5}},
		"empty rcpt":      {Rcpt: &Recipient{}},
		"long rcpt":       {Rcpt: &Recipient{Address: Address{Local: strings.Repeat("l", 70000)}}},
	}
}

// viaProto is what the generated code makes of r on the other end.
func viaProto(t testing.TB, data []byte) *Request {
	t.Helper()
	req := new(pb.HandleRequest)
	if err := proto.Unmarshal(data, req); err != nil {
		t.Fatalf("proto.Unmarshal: %v", err)
	}
	return fromPBRequest(req)
}

// TestLeanRequestCodec: what the lean codec writes, the generated code
// reads as the request; what either writes, the lean codec reads as the
// generated code does.
func TestLeanRequestCodec(t *testing.T) {
	for name, r := range codecRequests() {
		t.Run(name, func(t *testing.T) {
			std, err := proto.Marshal(toPBRequest(r))
			if err != nil {
				t.Fatal(err)
			}
			want := viaProto(t, std)
			lean, ok := appendRequest(nil, r)
			if !ok {
				t.Fatal("appendRequest refused a request without a message")
			}
			if got := viaProto(t, lean); !reflect.DeepEqual(got, want) {
				t.Errorf("the generated code read the lean encoding as\n%+v\nwant\n%+v", got, want)
			}
			for enc, data := range map[string][]byte{"lean": lean, "generated": std} {
				got, ok := parseRequest(data)
				if !ok {
					t.Errorf("parseRequest(%s encoding) refused it", enc)
				} else if !reflect.DeepEqual(got, want) {
					t.Errorf("parseRequest(%s encoding) =\n%+v\nwant\n%+v", enc, got, want)
				}
			}
		})
	}
}

// TestLeanRequestCodecLeaves: what the lean codec leaves to the
// generated code.
func TestLeanRequestCodecLeaves(t *testing.T) {
	if b, ok := appendRequest([]byte("x"), &Request{Message: &Message{}}); ok || string(b) != "x" {
		t.Errorf("appendRequest(a request with a message) = %q, %v; want it left alone", b, ok)
	}
	withMessage, _ := proto.Marshal(toPBRequest(&Request{Stage: StageData, Message: &Message{Body: []byte("b")}}))
	twice := append(append([]byte{}, mustLean(t, &Request{Session: &Session{ID: "a"}})...), mustLean(t, &Request{Session: &Session{Port: 1}})...)
	for name, data := range map[string][]byte{
		"message":       withMessage,
		"session twice": twice,
		"unknown field": {0x48, 0x01},       // field 9, varint
		"bad utf-8":     {0x0a, 0x01, 0xff}, // stage
		"short":         {0x0a, 0x05, 'r'},  // stage, 5 bytes promised
		"wrong type":    {0x08, 0x01},       // stage as a varint
		"long varint":   {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	} {
		if r, ok := parseRequest(data); ok {
			t.Errorf("%s: parseRequest = %+v, want it left to the generated code", name, r)
		}
	}
}

func mustLean(t *testing.T, r *Request) []byte {
	t.Helper()
	b, ok := appendRequest(nil, r)
	if !ok {
		t.Fatal("appendRequest refused")
	}
	return b
}

// FuzzParseRequest: parseRequest never panics, and whatever it reads the
// generated code reads too, as the same request.
func FuzzParseRequest(f *testing.F) {
	for _, r := range codecRequests() {
		b, _ := appendRequest(nil, r)
		f.Add(b)
		std, _ := proto.Marshal(toPBRequest(r))
		f.Add(std)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := parseRequest(data)
		if !ok {
			return
		}
		req := new(pb.HandleRequest)
		if err := proto.Unmarshal(data, req); err != nil {
			t.Fatalf("parseRequest read %q, which proto.Unmarshal refuses: %v", data, err)
		}
		if want := fromPBRequest(req); !reflect.DeepEqual(got, want) {
			t.Fatalf("parseRequest(%q) =\n%+v\nthe generated code's\n%+v", data, got, want)
		}
		again, ok := appendRequest(nil, got)
		if !ok {
			t.Fatal("appendRequest refused what parseRequest read")
		}
		if back, ok := parseRequest(again); !ok || !reflect.DeepEqual(back, got) {
			t.Fatalf("written again and read back: %+v, %v; want %+v", back, ok, got)
		}
	})
}
