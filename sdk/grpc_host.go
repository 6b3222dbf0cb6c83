package sdk

import (
	"context"
	"fmt"
	"time"

	"github.com/mailgate/gateway/sdk/internal/pb"
)

// The Host service: served by the gateway over go-plugin's broker
// (hostServer), called by the plugin through the Host its Configurer
// receives (hostClient).

// hostServer serves the gateway's Host to the plugin.
type hostServer struct {
	pb.UnimplementedHostServer
	host Host
}

func (s *hostServer) Lookup(ctx context.Context, req *pb.LookupRequest) (resp *pb.LookupResponse, err error) {
	defer recoverPanic("host lookup", &err)
	var values []string
	switch req.GetType() {
	case pb.LookupType_LOOKUP_TYPE_MX:
		mx, err := s.host.LookupMX(ctx, req.GetName())
		if err != nil {
			return nil, errorToStatus(err)
		}
		return &pb.LookupResponse{Mx: toPBMX(mx)}, nil
	case pb.LookupType_LOOKUP_TYPE_IP:
		values, err = s.host.LookupIP(ctx, req.GetName())
	case pb.LookupType_LOOKUP_TYPE_TXT:
		values, err = s.host.LookupTXT(ctx, req.GetName())
	case pb.LookupType_LOOKUP_TYPE_PTR:
		values, err = s.host.LookupPTR(ctx, req.GetName())
	default:
		return nil, errorToStatus(fmt.Errorf("sdk: unknown lookup type %d: %w", req.GetType(), ErrProtocol))
	}
	if err != nil {
		return nil, errorToStatus(err)
	}
	return &pb.LookupResponse{Values: values}, nil
}

// kv is the store a request names.
func (s *hostServer) kv(kind pb.KVKind) (KV, error) {
	switch kind {
	case pb.KVKind_KV_KIND_DURABLE:
		return s.host.Durable(), nil
	case pb.KVKind_KV_KIND_EPHEMERAL:
		return s.host.Ephemeral(), nil
	}
	return nil, fmt.Errorf("sdk: unknown key-value store kind %d: %w", kind, ErrProtocol)
}

func (s *hostServer) KVGet(ctx context.Context, req *pb.KVGetRequest) (resp *pb.KVGetResponse, err error) {
	defer recoverPanic("host kv get", &err)
	kv, err := s.kv(req.GetKind())
	if err != nil {
		return nil, errorToStatus(err)
	}
	v, ok, err := kv.Get(ctx, req.GetKey())
	if err != nil {
		return nil, errorToStatus(err)
	}
	return &pb.KVGetResponse{Value: v, Found: ok}, nil
}

// KVSet and KVIncr pass the ttl as it crossed: a negative one is the
// host's to refuse, not to read as "no expiry".
func (s *hostServer) KVSet(ctx context.Context, req *pb.KVSetRequest) (resp *pb.KVSetResponse, err error) {
	defer recoverPanic("host kv set", &err)
	kv, err := s.kv(req.GetKind())
	if err != nil {
		return nil, errorToStatus(err)
	}
	if err := kv.Set(ctx, req.GetKey(), req.GetValue(), time.Duration(req.GetTtlNanos())); err != nil {
		return nil, errorToStatus(err)
	}
	return &pb.KVSetResponse{}, nil
}

func (s *hostServer) KVIncr(ctx context.Context, req *pb.KVIncrRequest) (resp *pb.KVIncrResponse, err error) {
	defer recoverPanic("host kv incr", &err)
	kv, err := s.kv(req.GetKind())
	if err != nil {
		return nil, errorToStatus(err)
	}
	v, err := kv.Incr(ctx, req.GetKey(), req.GetDelta(), time.Duration(req.GetTtlNanos()))
	if err != nil {
		return nil, errorToStatus(err)
	}
	return &pb.KVIncrResponse{Value: v}, nil
}

func (s *hostServer) KVDelete(ctx context.Context, req *pb.KVDeleteRequest) (resp *pb.KVDeleteResponse, err error) {
	defer recoverPanic("host kv delete", &err)
	kv, err := s.kv(req.GetKind())
	if err != nil {
		return nil, errorToStatus(err)
	}
	if err := kv.Delete(ctx, req.GetKey()); err != nil {
		return nil, errorToStatus(err)
	}
	return &pb.KVDeleteResponse{}, nil
}

func (s *hostServer) Log(ctx context.Context, req *pb.LogRequest) (resp *pb.LogResponse, err error) {
	defer recoverPanic("host log", &err)
	if err := s.host.Log(ctx, req.GetLevel(), req.GetMessage(), req.GetFields()); err != nil {
		return nil, errorToStatus(err)
	}
	return &pb.LogResponse{}, nil
}

// hostClient is the Host a plugin's Configurer receives.
type hostClient struct {
	client pb.HostClient
}

var _ Host = (*hostClient)(nil)

func (h *hostClient) lookup(ctx context.Context, t pb.LookupType, name string) (*pb.LookupResponse, error) {
	resp, err := h.client.Lookup(ctx, &pb.LookupRequest{Type: t, Name: name}, callOptions()...)
	if err != nil {
		return nil, hostError(ctx, "lookup", err)
	}
	return resp, nil
}

func (h *hostClient) LookupMX(ctx context.Context, domain string) ([]MX, error) {
	resp, err := h.lookup(ctx, pb.LookupType_LOOKUP_TYPE_MX, domain)
	if err != nil {
		return nil, err
	}
	return fromPBMX(resp.GetMx())
}

func (h *hostClient) LookupIP(ctx context.Context, host string) ([]string, error) {
	resp, err := h.lookup(ctx, pb.LookupType_LOOKUP_TYPE_IP, host)
	return nonEmpty(resp.GetValues()), err
}

func (h *hostClient) LookupTXT(ctx context.Context, name string) ([]string, error) {
	resp, err := h.lookup(ctx, pb.LookupType_LOOKUP_TYPE_TXT, name)
	return nonEmpty(resp.GetValues()), err
}

func (h *hostClient) LookupPTR(ctx context.Context, ip string) ([]string, error) {
	resp, err := h.lookup(ctx, pb.LookupType_LOOKUP_TYPE_PTR, ip)
	return nonEmpty(resp.GetValues()), err
}

func (h *hostClient) Durable() KV   { return kvClient{h.client, pb.KVKind_KV_KIND_DURABLE} }
func (h *hostClient) Ephemeral() KV { return kvClient{h.client, pb.KVKind_KV_KIND_EPHEMERAL} }

// Log returns the host's refusal of a bad level; a line lost on the way
// (the host is going away) is an error too, which callers may ignore.
func (h *hostClient) Log(ctx context.Context, level, msg string, fields map[string]string) error {
	_, err := h.client.Log(ctx, &pb.LogRequest{Level: level, Message: msg, Fields: fields}, callOptions()...)
	if err != nil {
		return hostError(ctx, "log", err)
	}
	return nil
}

// kvClient is one of the host's stores, as the plugin sees it.
type kvClient struct {
	client pb.HostClient
	kind   pb.KVKind
}

func (c kvClient) Get(ctx context.Context, key string) (string, bool, error) {
	resp, err := c.client.KVGet(ctx, &pb.KVGetRequest{Key: key, Kind: c.kind}, callOptions()...)
	if err != nil {
		return "", false, hostError(ctx, "kv get", err)
	}
	return resp.GetValue(), resp.GetFound(), nil
}

func (c kvClient) Set(ctx context.Context, key, value string, ttl time.Duration) error {
	_, err := c.client.KVSet(ctx, &pb.KVSetRequest{Key: key, Value: value, TtlNanos: int64(ttl), Kind: c.kind}, callOptions()...)
	if err != nil {
		return hostError(ctx, "kv set", err)
	}
	return nil
}

func (c kvClient) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	resp, err := c.client.KVIncr(ctx, &pb.KVIncrRequest{Key: key, Delta: delta, TtlNanos: int64(ttl), Kind: c.kind}, callOptions()...)
	if err != nil {
		return 0, hostError(ctx, "kv incr", err)
	}
	return resp.GetValue(), nil
}

func (c kvClient) Delete(ctx context.Context, key string) error {
	_, err := c.client.KVDelete(ctx, &pb.KVDeleteRequest{Key: key, Kind: c.kind}, callOptions()...)
	if err != nil {
		return hostError(ctx, "kv delete", err)
	}
	return nil
}

// hostError is errorFromStatus for calls to the host.
func hostError(ctx context.Context, op string, err error) error {
	return errorFromStatus(ctx, "host "+op, err)
}

// noHost is the Host of a plugin configured without host services.
type noHost struct{}

func (noHost) err() error                                           { return fmt.Errorf("sdk: no host services: %w", ErrUnavailable) }
func (h noHost) LookupMX(context.Context, string) ([]MX, error)     { return nil, h.err() }
func (h noHost) LookupIP(context.Context, string) ([]string, error) { return nil, h.err() }
func (h noHost) LookupTXT(context.Context, string) ([]string, error) {
	return nil, h.err()
}
func (h noHost) LookupPTR(context.Context, string) ([]string, error) {
	return nil, h.err()
}
func (h noHost) Durable() KV                                              { return h }
func (h noHost) Ephemeral() KV                                            { return h }
func (h noHost) Get(context.Context, string) (string, bool, error)        { return "", false, h.err() }
func (h noHost) Set(context.Context, string, string, time.Duration) error { return h.err() }
func (h noHost) Incr(context.Context, string, int64, time.Duration) (int64, error) {
	return 0, h.err()
}
func (h noHost) Delete(context.Context, string) error                         { return h.err() }
func (h noHost) Log(context.Context, string, string, map[string]string) error { return h.err() }
