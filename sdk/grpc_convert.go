package sdk

// Conversions between the sdk's types and the wire messages of
// sdk/internal/pb, in one place (STYLE.md rule 5). They live in package sdk,
// not in an internal package of their own, because Serve (package sdk) needs
// them and they need the sdk's types: a separate package would be an import
// cycle.
//
// toPB* functions never fail. fromPB* functions accept any message, however
// malformed (nil pointers, out-of-range enums and codes, bad JSON): they
// never panic, and return an error wrapping ErrProtocol for what can't be
// represented.

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"

	"github.com/mailgate/gateway/sdk/internal/pb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func toPBAddress(a Address) *pb.Address {
	return &pb.Address{Local: a.Local, Domain: a.Domain}
}

func fromPBAddress(a *pb.Address) Address {
	return Address{Local: a.GetLocal(), Domain: a.GetDomain()}
}

func toPBHeader(h []HeaderField) []*pb.HeaderField {
	if len(h) == 0 {
		return nil
	}
	out := make([]*pb.HeaderField, len(h))
	for i, f := range h {
		out[i] = &pb.HeaderField{Name: f.Name, Value: f.Value}
	}
	return out
}

func fromPBHeader(h []*pb.HeaderField) []HeaderField {
	if len(h) == 0 {
		return nil
	}
	out := make([]HeaderField, len(h))
	for i, f := range h {
		out[i] = HeaderField{Name: f.GetName(), Value: f.GetValue()}
	}
	return out
}

func toPBSession(s *Session) *pb.Session {
	if s == nil {
		return nil
	}
	return &pb.Session{
		Id: s.ID, Listener: s.Listener, ClientIp: s.ClientIP, Port: clampInt32(s.Port),
		Helo: s.HELO, Esmtp: s.ESMTP, Tls: s.TLS, AuthUser: s.AuthUser,
	}
}

func fromPBSession(s *pb.Session) *Session {
	if s == nil {
		return nil
	}
	return &Session{
		ID: s.GetId(), Listener: s.GetListener(), ClientIP: s.GetClientIp(), Port: int(s.GetPort()),
		HELO: s.GetHelo(), ESMTP: s.GetEsmtp(), TLS: s.GetTls(), AuthUser: s.GetAuthUser(),
	}
}

func toPBRecipient(r Recipient) *pb.Recipient {
	return &pb.Recipient{Address: toPBAddress(r.Address), Notify: nonEmpty(r.Notify), Orcpt: r.ORCPT}
}

func fromPBRecipient(r *pb.Recipient) Recipient {
	return Recipient{Address: fromPBAddress(r.GetAddress()), Notify: nonEmpty(r.GetNotify()), ORCPT: r.GetOrcpt()}
}

func toPBRecipients(rs []Recipient) []*pb.Recipient {
	if len(rs) == 0 {
		return nil
	}
	out := make([]*pb.Recipient, len(rs))
	for i, r := range rs {
		out[i] = toPBRecipient(r)
	}
	return out
}

func fromPBRecipients(rs []*pb.Recipient) []Recipient {
	if len(rs) == 0 {
		return nil
	}
	out := make([]Recipient, len(rs))
	for i, r := range rs {
		out[i] = fromPBRecipient(r)
	}
	return out
}

func toPBTxn(t *Txn) *pb.Txn {
	if t == nil {
		return nil
	}
	out := &pb.Txn{
		Sender: toPBAddress(t.Sender), Recipients: toPBRecipients(t.Recipients), Size: t.Size,
		Body: t.Body, Smtputf8: t.SMTPUTF8, Ret: t.Ret, EnvId: t.EnvID,
	}
	if !t.Received.IsZero() {
		out.Received = timestamppb.New(t.Received)
	}
	return out
}

func fromPBTxn(t *pb.Txn) *Txn {
	if t == nil {
		return nil
	}
	out := &Txn{
		Sender: fromPBAddress(t.GetSender()), Recipients: fromPBRecipients(t.GetRecipients()), Size: t.GetSize(),
		Body: t.GetBody(), SMTPUTF8: t.GetSmtputf8(), Ret: t.GetRet(), EnvID: t.GetEnvId(),
	}
	// A timestamp out of Go's range is dropped, not wrapped around.
	if ts := t.GetReceived(); ts != nil && ts.CheckValid() == nil {
		out.Received = ts.AsTime()
	}
	return out
}

func toPBMessage(m *Message) *pb.Message {
	if m == nil {
		return nil
	}
	return &pb.Message{Header: toPBHeader(m.Header), Body: m.Body, Truncated: m.Truncated, Size: m.Size, Auth: toPBAuth(m.Auth)}
}

func fromPBMessage(m *pb.Message) *Message {
	if m == nil {
		return nil
	}
	return &Message{
		Header: fromPBHeader(m.GetHeader()), Body: nonEmpty(m.GetBody()), Truncated: m.GetTruncated(), Size: m.GetSize(),
		Auth: fromPBAuth(m.GetAuth()),
	}
}

func toPBAuth(a *AuthResults) *pb.AuthResults {
	if a == nil {
		return nil
	}
	out := &pb.AuthResults{
		Spf:   &pb.AuthResult{Result: a.SPF.Result, Domain: a.SPF.Domain},
		Dmarc: &pb.AuthResult{Result: a.DMARC.Result, Domain: a.DMARC.Domain, Policy: a.DMARC.Policy},
		Arc:   &pb.AuthResult{Result: a.ARC.Result},
	}
	for _, d := range a.DKIM {
		out.Dkim = append(out.Dkim, &pb.AuthResult{Result: d.Result, Domain: d.Domain, Selector: d.Selector})
	}
	return out
}

func fromPBAuth(a *pb.AuthResults) *AuthResults {
	if a == nil {
		return nil
	}
	out := &AuthResults{
		SPF:   SPFResult{Result: a.GetSpf().GetResult(), Domain: a.GetSpf().GetDomain()},
		DMARC: DMARCResult{Result: a.GetDmarc().GetResult(), Domain: a.GetDmarc().GetDomain(), Policy: a.GetDmarc().GetPolicy()},
		ARC:   ARCResult{Result: a.GetArc().GetResult()},
	}
	for _, d := range a.GetDkim() {
		out.DKIM = append(out.DKIM, DKIMResult{Result: d.GetResult(), Domain: d.GetDomain(), Selector: d.GetSelector()})
	}
	return out
}

func toPBRequest(r *Request) *pb.HandleRequest {
	if r == nil {
		return &pb.HandleRequest{}
	}
	out := &pb.HandleRequest{
		Stage: string(r.Stage), Session: toPBSession(r.Session), Txn: toPBTxn(r.Txn),
		Command: r.Command, Arg: r.Arg, Message: toPBMessage(r.Message),
	}
	if len(r.Notes) > 0 {
		out.Notes = r.Notes
	}
	if r.Rcpt != nil {
		out.Rcpt = toPBRecipient(*r.Rcpt)
	}
	return out
}

func fromPBRequest(r *pb.HandleRequest) *Request {
	out := &Request{
		Stage: Stage(r.GetStage()), Session: fromPBSession(r.GetSession()), Txn: fromPBTxn(r.GetTxn()),
		Command: r.GetCommand(), Arg: r.GetArg(), Message: fromPBMessage(r.GetMessage()),
		Notes: notesOrNil(r.GetNotes()),
	}
	if r.GetRcpt() != nil {
		rc := fromPBRecipient(r.GetRcpt())
		out.Rcpt = &rc
	}
	return out
}

func toPBEnhanced(e EnhancedCode) []uint32 {
	if e.IsZero() {
		return nil
	}
	return []uint32{uint32(e[0]), uint32(e[1]), uint32(e[2])}
}

func fromPBEnhanced(e []uint32) (EnhancedCode, error) {
	if len(e) == 0 {
		return EnhancedCode{}, nil
	}
	if len(e) != 3 {
		return EnhancedCode{}, fmt.Errorf("sdk: enhanced code has %d parts, want 3: %w", len(e), ErrProtocol)
	}
	var out EnhancedCode
	for i, v := range e {
		if v > math.MaxUint16 {
			return EnhancedCode{}, fmt.Errorf("sdk: enhanced code part %d out of range: %w", v, ErrProtocol)
		}
		out[i] = uint16(v)
	}
	return out, nil
}

func toPBDecision(d Decision) *pb.Decision {
	return &pb.Decision{
		Verdict: pb.Verdict(d.Verdict), Code: clampInt32(d.Code), Enhanced: toPBEnhanced(d.Enhanced),
		Message: d.Message, Reason: d.Reason, Disconnect: d.Disconnect,
	}
}

func fromPBDecision(d *pb.Decision) (Decision, error) {
	v := d.GetVerdict()
	if v < pb.Verdict_VERDICT_CONTINUE || v > pb.Verdict_VERDICT_DROP {
		return Decision{}, fmt.Errorf("sdk: unknown verdict %d: %w", v, ErrProtocol)
	}
	enh, err := fromPBEnhanced(d.GetEnhanced())
	if err != nil {
		return Decision{}, err
	}
	return Decision{
		Verdict: Verdict(v), Code: int(d.GetCode()), Enhanced: enh,
		Message: d.GetMessage(), Reason: d.GetReason(), Disconnect: d.GetDisconnect(),
	}, nil
}

func toPBEffects(e *Effects) *pb.Effects {
	if e.IsZero() {
		return nil
	}
	out := &pb.Effects{
		AddHeaders: toPBHeader(e.AddHeaders), RemoveHeaders: nonEmpty(e.RemoveHeaders),
		Body: e.Body, Skip: nonEmpty(e.Skip), ReplyLines: nonEmpty(e.ReplyLines),
	}
	if len(e.Notes) > 0 {
		out.Notes = e.Notes
	}
	for _, a := range e.Recipients {
		out.Recipients = append(out.Recipients, toPBAddress(a))
	}
	if e.Sender != nil {
		out.Sender = toPBAddress(*e.Sender)
	}
	if e.Route != nil {
		out.Route = &pb.Route{Transport: e.Route.Transport, Via: e.Route.Via}
	}
	return out
}

func fromPBEffects(e *pb.Effects) Effects {
	if e == nil {
		return Effects{}
	}
	out := Effects{
		AddHeaders: fromPBHeader(e.GetAddHeaders()), RemoveHeaders: nonEmpty(e.GetRemoveHeaders()),
		Body: e.GetBody(), Skip: nonEmpty(e.GetSkip()), ReplyLines: nonEmpty(e.GetReplyLines()),
	}
	// Presence: proto3 optional bytes decodes a present empty body as a
	// non-nil empty slice; keep it that way.
	if e.Body != nil && len(e.Body) == 0 {
		out.Body = []byte{}
	}
	out.Notes = notesOrNil(e.GetNotes())
	for _, a := range e.GetRecipients() {
		out.Recipients = append(out.Recipients, fromPBAddress(a))
	}
	if e.GetSender() != nil {
		s := fromPBAddress(e.GetSender())
		out.Sender = &s
	}
	if r := e.GetRoute(); r != nil {
		out.Route = &Route{Transport: r.GetTransport(), Via: r.GetVia()}
	}
	return out
}

func toPBHandleResponse(d Decision, e Effects) *pb.HandleResponse {
	return &pb.HandleResponse{Decision: toPBDecision(d), Effects: toPBEffects(&e)}
}

func fromPBHandleResponse(r *pb.HandleResponse) (Decision, Effects, error) {
	d, err := fromPBDecision(r.GetDecision())
	if err != nil {
		return Decision{}, Effects{}, err
	}
	return d, fromPBEffects(r.GetEffects()), nil
}

func toPBConfigField(f ConfigField) (*pb.ConfigField, error) {
	out := &pb.ConfigField{Name: f.Name, Type: f.Type, Required: f.Required, Description: f.Description}
	if f.Default != nil {
		b, err := json.Marshal(f.Default)
		if err != nil {
			return nil, fmt.Errorf("sdk: default of %s: %w", f.Name, err)
		}
		out.DefaultJson = b
	}
	return out, nil
}

func fromPBConfigField(f *pb.ConfigField) (ConfigField, error) {
	out := ConfigField{Name: f.GetName(), Type: f.GetType(), Required: f.GetRequired(), Description: f.GetDescription()}
	if len(f.GetDefaultJson()) > 0 {
		var v any
		if err := json.Unmarshal(f.GetDefaultJson(), &v); err != nil {
			return ConfigField{}, fmt.Errorf("sdk: default of %s: %v: %w", out.Name, err, ErrProtocol)
		}
		out.Default = coerceConfigValue(out.Type, v)
	}
	return out, nil
}

func toPBInfo(i Info) (*pb.Info, error) {
	out := &pb.Info{Name: i.Name, Version: i.Version, Transports: nonEmpty(i.Transports)}
	for _, v := range i.ProtocolVersions {
		out.ProtocolVersions = append(out.ProtocolVersions, clampInt32(v))
	}
	for _, s := range i.Stages {
		out.Stages = append(out.Stages, string(s))
	}
	for _, f := range i.Schema {
		pf, err := toPBConfigField(f)
		if err != nil {
			return nil, err
		}
		out.Schema = append(out.Schema, pf)
	}
	return out, nil
}

func fromPBInfo(i *pb.Info) (Info, error) {
	out := Info{Name: i.GetName(), Version: i.GetVersion(), Transports: nonEmpty(i.GetTransports())}
	for _, v := range i.GetProtocolVersions() {
		out.ProtocolVersions = append(out.ProtocolVersions, int(v))
	}
	for _, s := range i.GetStages() {
		out.Stages = append(out.Stages, Stage(s))
	}
	for _, pf := range i.GetSchema() {
		f, err := fromPBConfigField(pf)
		if err != nil {
			return Info{}, err
		}
		out.Schema = append(out.Schema, f)
	}
	return out, nil
}

// toPBConfig encodes a config block as a JSON object.
func toPBConfig(cfg map[string]any) ([]byte, error) {
	if cfg == nil {
		cfg = map[string]any{}
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("sdk: config: %w", err)
	}
	return b, nil
}

// fromPBConfig decodes a config block and gives each value the Go type the
// Configurer contract promises (string, float64, bool, []string,
// map[string]string), using the schema where it names the field.
func fromPBConfig(b []byte, schema []ConfigField) (map[string]any, error) {
	cfg := map[string]any{}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, fmt.Errorf("sdk: config is not a JSON object: %v: %w", err, ErrProtocol)
		}
		if cfg == nil { // the JSON literal null
			cfg = map[string]any{}
		}
	}
	types := make(map[string]string, len(schema))
	for _, f := range schema {
		types[f.Name] = f.Type
	}
	for k, v := range cfg {
		cfg[k] = coerceConfigValue(types[k], v)
	}
	return cfg, nil
}

// coerceConfigValue turns JSON-decoded lists and maps of strings into
// []string and map[string]string; typ is the schema type, "" if unknown.
// Values that don't fit are returned unchanged for ValidateConfig to
// report.
func coerceConfigValue(typ string, v any) any {
	switch x := v.(type) {
	case []any:
		if typ != "" && typ != TypeList {
			return v
		}
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return v
			}
			out = append(out, s)
		}
		return out
	case map[string]any:
		if typ != "" && typ != TypeMap {
			return v
		}
		out := make(map[string]string, len(x))
		for k, e := range x {
			s, ok := e.(string)
			if !ok {
				return v
			}
			out[k] = s
		}
		return out
	}
	return v
}

func toPBConfigErrors(errs ConfigErrors) []*pb.ConfigError {
	out := make([]*pb.ConfigError, 0, len(errs))
	for _, e := range errs {
		if e != nil {
			out = append(out, &pb.ConfigError{Field: e.Field, Message: e.Message})
		}
	}
	return out
}

func fromPBConfigErrors(errs []*pb.ConfigError) ConfigErrors {
	if len(errs) == 0 {
		return nil
	}
	out := make(ConfigErrors, len(errs))
	for i, e := range errs {
		out[i] = &ConfigError{Field: e.GetField(), Message: e.GetMessage()}
	}
	return out
}

func toPBDelivery(d *Delivery) *pb.Delivery {
	if d == nil {
		return &pb.Delivery{}
	}
	return &pb.Delivery{
		Id: d.ID, Txn: toPBTxn(&d.Txn), Recipients: toPBRecipients(d.Recipients), Domain: d.Domain,
		Transport: d.Transport, Via: d.Via, Content: d.Content,
	}
}

func fromPBDelivery(d *pb.Delivery) *Delivery {
	out := &Delivery{
		ID: d.GetId(), Recipients: fromPBRecipients(d.GetRecipients()), Domain: d.GetDomain(),
		Transport: d.GetTransport(), Via: d.GetVia(), Content: nonEmpty(d.GetContent()),
	}
	if t := fromPBTxn(d.GetTxn()); t != nil {
		out.Txn = *t
	}
	return out
}

func toPBDeliveryResults(rs []DeliveryResult) []*pb.DeliveryResult {
	out := make([]*pb.DeliveryResult, len(rs))
	for i, r := range rs {
		out[i] = &pb.DeliveryResult{
			Outcome: pb.Outcome(r.Outcome), Code: clampInt32(r.Code), Enhanced: toPBEnhanced(r.Enhanced),
			Text: r.Text, RemoteMta: r.RemoteMTA,
		}
	}
	return out
}

func fromPBDeliveryResults(rs []*pb.DeliveryResult) ([]DeliveryResult, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	out := make([]DeliveryResult, len(rs))
	for i, r := range rs {
		o := r.GetOutcome()
		if o < pb.Outcome_OUTCOME_TEMPORARY || o > pb.Outcome_OUTCOME_PERMANENT {
			return nil, fmt.Errorf("sdk: unknown delivery outcome %d: %w", o, ErrProtocol)
		}
		enh, err := fromPBEnhanced(r.GetEnhanced())
		if err != nil {
			return nil, err
		}
		out[i] = DeliveryResult{
			Outcome: Outcome(o), Code: int(r.GetCode()), Enhanced: enh, Text: r.GetText(), RemoteMTA: r.GetRemoteMta(),
		}
	}
	return out, nil
}

func toPBMX(mx []MX) []*pb.MX {
	out := make([]*pb.MX, len(mx))
	for i, m := range mx {
		out[i] = &pb.MX{Host: m.Host, Preference: uint32(m.Preference)}
	}
	return out
}

func fromPBMX(mx []*pb.MX) ([]MX, error) {
	if len(mx) == 0 {
		return nil, nil
	}
	out := make([]MX, len(mx))
	for i, m := range mx {
		if m.GetPreference() > math.MaxUint16 {
			return nil, fmt.Errorf("sdk: MX preference %d out of range: %w", m.GetPreference(), ErrProtocol)
		}
		out[i] = MX{Host: m.GetHost(), Preference: uint16(m.GetPreference())}
	}
	return out, nil
}

func clampInt32(v int) int32 {
	switch {
	case v > math.MaxInt32:
		return math.MaxInt32
	case v < math.MinInt32:
		return math.MinInt32
	}
	return int32(v)
}

// nonEmpty maps an empty slice to nil, so that nil and empty compare equal
// after a round trip (the wire can't tell them apart).
func nonEmpty[S ~[]E, E any](s S) S {
	if len(s) == 0 {
		return nil
	}
	return s
}

// notesOrNil returns a copy of a decoded notes map, nil when it is empty.
func notesOrNil(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}
