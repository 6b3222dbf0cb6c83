package sdk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/mailgate/gateway/sdk/internal/pb"
	"google.golang.org/grpc"
)

// MaxWireMessage bounds one gRPC message in either direction, on both the
// Plugin and the Host connections. Deliver and Handle at data carry whole
// messages, so it is well above the gateway's largest message size.
const MaxWireMessage = 64 << 20

// parentPoll is how often a plugin process looks whether the gateway that
// started it is still there.
const parentPoll = 500 * time.Millisecond

// serve runs p as a go-plugin process. It does not return: the process
// ends when the host tells go-plugin to stop, or when the host is gone
// (watchParent; the host also starts it with a parent-death signal where
// the system has one).
func serve(p Describer) {
	if ppid := os.Getppid(); ppid > 1 {
		// The watch lasts as long as the process: its owner is the
		// process, and its stop is the exit.
		go watchParent(nil, ppid, parentPoll, os.Getppid, func() {
			fmt.Fprintf(os.Stderr, "sdk: the gateway (pid %d) is gone; exiting\n", ppid)
			os.Exit(1)
		})
	}
	conn, err := openCallChannel()
	if err != nil {
		// The host would wait on a channel nobody serves: stop here,
		// and the host's start fails with this on its log.
		fmt.Fprintf(os.Stderr, "%v\n", err)
		os.Exit(1)
	}
	if conn != nil {
		// Owned by the process like the watch above; it stops when the
		// host closes its end.
		go func() { _ = serveCalls(conn, p) }()
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: versionedPlugins(p),
		GRPCServer:       newGRPCServer,
	})
}

// watchParent calls gone once getppid stops returning parent: the parent
// has died and the process was given to init or a subreaper. It looks
// every interval until it calls gone or stop is closed.
func watchParent(stop <-chan struct{}, parent int, interval time.Duration, getppid func() int, gone func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if getppid() != parent {
				gone()
				return
			}
		}
	}
}

// versionedPlugins is the plugin map for every protocol version; impl is
// nil on the host's side.
func versionedPlugins(impl Describer) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		ProtocolVersion: {PluginName: &grpcPlugin{impl: impl, version: ProtocolVersion}},
	}
}

// ServePlugins is the plugin map Serve uses for p. It exists for in-process
// tests (sdktest.Start, plugin.ServeTestConfig); a plugin's main calls
// Serve.
func ServePlugins(p Describer) map[int]plugin.PluginSet {
	if p == nil {
		panic("sdk: ServePlugins needs a plugin")
	}
	return versionedPlugins(p)
}

// Flow-control windows of both ends of the plugin connection. Setting
// them turns off gRPC's bandwidth-delay estimator, which otherwise sends a
// PING (and reads its ACK) with the data of nearly every call: on a local
// socket it measures nothing and costs a write and a wake-up per call. The
// windows are large enough that a data request of a few MB is not held
// back waiting for WINDOW_UPDATEs.
const (
	streamWindow = 4 << 20
	connWindow   = 16 << 20
)

// newGRPCServer is plugin.DefaultGRPCServer with the message size limits
// raised to MaxWireMessage and fixed flow-control windows.
func newGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	opts = append(opts, grpc.MaxRecvMsgSize(MaxWireMessage), grpc.MaxSendMsgSize(MaxWireMessage),
		grpc.InitialWindowSize(streamWindow), grpc.InitialConnWindowSize(connWindow))
	return plugin.DefaultGRPCServer(opts)
}

// DialOptions are the gRPC options of the host's connection to a plugin
// (go-plugin's ClientConfig.GRPCDialOptions): the same fixed windows as
// the plugin's server.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithInitialWindowSize(streamWindow), grpc.WithInitialConnWindowSize(connWindow)}
}

// callOptions raise the client's limits to MaxWireMessage on every call
// (the host's dial options belong to go-plugin's client config).
func callOptions() []grpc.CallOption {
	return []grpc.CallOption{grpc.MaxCallRecvMsgSize(MaxWireMessage), grpc.MaxCallSendMsgSize(MaxWireMessage)}
}

// grpcPlugin is the go-plugin GRPCPlugin for one protocol version.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl    Describer // nil on the host side
	version int
}

var _ plugin.GRPCPlugin = (*grpcPlugin)(nil)

func (p *grpcPlugin) GRPCServer(b *plugin.GRPCBroker, s *grpc.Server) error {
	if p.impl == nil {
		return errors.New("sdk: no plugin to serve")
	}
	pb.RegisterPluginServer(s, &grpcServer{impl: p.impl, broker: b})
	return nil
}

// GRPCClient returns the host's Remote. ctx ends when the plugin process
// exits; it stops the Host service served for the plugin, and is not used
// for calls (each call takes its caller's ctx).
func (p *grpcPlugin) GRPCClient(ctx context.Context, b *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	cl := &grpcClient{client: pb.NewPluginClient(c), broker: b, version: p.version}
	context.AfterFunc(ctx, func() { _ = cl.Close() })
	return cl, nil
}

// ---- plugin side ----

// grpcServer serves the Plugin service for the author's value.
type grpcServer struct {
	pb.UnimplementedPluginServer
	impl   Describer
	broker *plugin.GRPCBroker

	mu       sync.Mutex
	hostConn *grpc.ClientConn // to the Host service the Configurer was last given
}

// recoverPanic turns a panic in the author's code into an INTERNAL error
// for the host; the stack goes to stderr, which go-plugin copies into the
// host's log. Use as `defer recoverPanic("rcpt hook", &err)`.
func recoverPanic(op string, err *error) {
	if r := recover(); r != nil {
		*err = panicError(op, r)
	}
}

// recoverHookPanic is recoverPanic for a hook of stage, naming it only
// when there was a panic.
func recoverHookPanic(stage Stage, err *error) {
	if r := recover(); r != nil {
		*err = panicError(string(stage)+" hook", r)
	}
}

// panicError logs panic r of op with its stack and returns the INTERNAL
// error the host gets.
func panicError(op string, r any) error {
	fmt.Fprintf(os.Stderr, "sdk: panic in %s: %v\n%s", op, r, debug.Stack())
	return errorToStatus(fmt.Errorf("sdk: panic in %s: %v: %w", op, r, ErrInternal))
}

// info is the author's Info with the protocol versions and stages filled in.
func (s *grpcServer) info() Info {
	i := s.impl.Info()
	i.ProtocolVersions = []int{ProtocolVersion}
	i.Stages = StagesOf(s.impl)
	return i
}

func (s *grpcServer) GetInfo(ctx context.Context, _ *pb.GetInfoRequest) (resp *pb.GetInfoResponse, err error) {
	defer recoverPanic("Info", &err)
	info, err := toPBInfo(s.info())
	if err != nil {
		return nil, errorToStatus(fmt.Errorf("%v: %w", err, ErrInternal))
	}
	return &pb.GetInfoResponse{Info: info}, nil
}

// Configure checks the block against the schema (so every plugin reports
// unknown fields and wrong types the same way), fills in defaults, and
// hands it with a Host client to the Configurer, if the plugin has one.
func (s *grpcServer) Configure(ctx context.Context, req *pb.ConfigureRequest) (resp *pb.ConfigureResponse, err error) {
	defer recoverPanic("Configure", &err)
	info := s.info()
	cfg, err := fromPBConfig(req.GetConfigJson(), info.Schema)
	if err != nil {
		return nil, errorToStatus(err)
	}
	if errs := info.ValidateConfig(cfg); errs != nil {
		return &pb.ConfigureResponse{Errors: toPBConfigErrors(errs)}, nil
	}
	cfg = info.ApplyDefaults(cfg)
	c, ok := s.impl.(Configurer)
	if !ok {
		return &pb.ConfigureResponse{}, nil
	}

	var host Host = noHost{}
	var conn *grpc.ClientConn
	if id := req.GetHostBrokerId(); id != 0 {
		conn, err = s.broker.DialWithOptions(id, append(DialOptions(), grpc.WithDefaultCallOptions(callOptions()...))...)
		if err != nil {
			return nil, errorToStatus(fmt.Errorf("sdk: dial the host's services: %v: %w", err, ErrUnavailable))
		}
		host = &hostClient{client: pb.NewHostClient(conn)}
	}
	kept := false
	defer func() {
		if !kept && conn != nil {
			conn.Close()
		}
	}()

	if err := c.Configure(ctx, cfg, host); err != nil {
		var errs ConfigErrors
		var one *ConfigError
		switch {
		case errors.As(err, &errs) && len(errs) > 0:
			return &pb.ConfigureResponse{Errors: toPBConfigErrors(errs)}, nil
		case errors.As(err, &one):
			return &pb.ConfigureResponse{Errors: toPBConfigErrors(ConfigErrors{one})}, nil
		}
		return nil, errorToStatus(err)
	}
	kept = true
	s.mu.Lock()
	old := s.hostConn
	s.hostConn = conn
	s.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return &pb.ConfigureResponse{}, nil
}

func (s *grpcServer) Handle(ctx context.Context, req *pb.HandleRequest) (*pb.HandleResponse, error) {
	d, e, err := s.handle(ctx, fromPBRequest(req))
	if err != nil {
		return nil, err
	}
	return toPBHandleResponse(d, e), nil
}

// handle runs the hook for r; its error is a gRPC status.
func (s *grpcServer) handle(ctx context.Context, r *Request) (d Decision, e Effects, err error) {
	defer recoverHookPanic(r.Stage, &err)
	d, e, err = s.dispatch(ctx, r)
	if err != nil {
		return Decision{}, Effects{}, errorToStatus(err)
	}
	return d, e, nil
}

// dispatch calls the hook method for r.Stage.
func (s *grpcServer) dispatch(ctx context.Context, r *Request) (Decision, Effects, error) {
	notHandled := func() (Decision, Effects, error) {
		return Decision{}, Effects{}, fmt.Errorf("sdk: %q: %w", r.Stage, ErrNotHandled)
	}
	switch r.Stage {
	case StageConnect:
		if h, ok := s.impl.(ConnectHook); ok {
			return h.Connect(ctx, r)
		}
	case StageHelo:
		if h, ok := s.impl.(HeloHook); ok {
			return h.Helo(ctx, r)
		}
	case StageAuth:
		if h, ok := s.impl.(AuthHook); ok {
			return h.Auth(ctx, r)
		}
	case StageMail:
		if h, ok := s.impl.(MailHook); ok {
			return h.Mail(ctx, r)
		}
	case StageRcpt:
		if h, ok := s.impl.(RcptHook); ok {
			return h.Rcpt(ctx, r)
		}
	case StageCommand:
		if h, ok := s.impl.(CommandHook); ok {
			return h.Command(ctx, r)
		}
	case StageData:
		if h, ok := s.impl.(DataHook); ok {
			return h.Data(ctx, r)
		}
	case StagePredelivery:
		if h, ok := s.impl.(PredeliveryHook); ok {
			return h.Predelivery(ctx, r)
		}
	case StageDelivered, StageDeferred, StageBounced, StageDisconnect:
		if h, ok := s.impl.(NotifyHook); ok {
			return Decision{}, Effects{}, h.Notify(ctx, r)
		}
	}
	return notHandled()
}

func (s *grpcServer) Deliver(ctx context.Context, req *pb.DeliverRequest) (resp *pb.DeliverResponse, err error) {
	defer recoverPanic("Deliver", &err)
	t, ok := s.impl.(Transport)
	if !ok {
		return nil, errorToStatus(fmt.Errorf("sdk: deliver: %w", ErrNotHandled))
	}
	results, err := t.Deliver(ctx, fromPBDelivery(req.GetDelivery()))
	if err != nil {
		return nil, errorToStatus(err)
	}
	return &pb.DeliverResponse{Results: toPBDeliveryResults(results)}, nil
}

// ---- host side ----

// grpcClient is the host's Remote.
type grpcClient struct {
	client  pb.PluginClient
	broker  *plugin.GRPCBroker
	version int // the protocol version go-plugin negotiated

	mu     sync.Mutex
	host   *grpc.Server // serving the Host given to the last successful Configure
	closed bool         // by Close: a Configure ending after it keeps no Host server
}

var _ Remote = (*grpcClient)(nil)

// Info also checks that the plugin lists the negotiated protocol version.
func (c *grpcClient) Info(ctx context.Context) (Info, error) {
	resp, err := c.client.GetInfo(ctx, &pb.GetInfoRequest{}, callOptions()...)
	if err != nil {
		return Info{}, errorFromStatus(ctx, "plugin info", err)
	}
	info, err := fromPBInfo(resp.GetInfo())
	if err != nil {
		return Info{}, err
	}
	if _, err := Negotiate([]int{c.version}, info.ProtocolVersions); err != nil {
		return Info{}, err
	}
	return info, nil
}

// Configure serves host (if not nil) over the broker for the plugin; the
// previous Host server stops once the plugin accepts the new config.
func (c *grpcClient) Configure(ctx context.Context, config map[string]any, host Host) error {
	b, err := toPBConfig(config)
	if err != nil {
		return err
	}
	var id uint32
	var srv *grpc.Server
	if host != nil {
		id = c.broker.NextId()
		ln, err := c.broker.Accept(id)
		if err != nil {
			return fmt.Errorf("sdk: serve host services: %v: %w", err, ErrUnavailable)
		}
		srv = newGRPCServer(nil)
		pb.RegisterHostServer(srv, &hostServer{host: host})
		go func() {
			defer func() { _ = recover() }() // Serve only returns; never let it take the host down
			_ = srv.Serve(ln)                // returns when stopped or the broker closes
		}()
	}
	resp, err := c.client.Configure(ctx, &pb.ConfigureRequest{ConfigJson: b, HostBrokerId: id}, callOptions()...)
	if err == nil && len(resp.GetErrors()) > 0 {
		err = fromPBConfigErrors(resp.GetErrors())
	} else if err != nil {
		err = errorFromStatus(ctx, "plugin configure", err)
	}
	if err != nil {
		if srv != nil {
			srv.Stop()
		}
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		if srv != nil {
			srv.Stop()
		}
		return fmt.Errorf("sdk: configure: the plugin's connection was closed meanwhile: %w", ErrUnavailable)
	}
	old := c.host
	c.host = srv
	c.mu.Unlock()
	if old != nil {
		old.Stop()
	}
	return nil
}

// Close stops the Host service served for the plugin (Configure), which
// also removes its socket, and that of a Configure still under way. The
// host's Remote is closed when the plugin process exits; sdktest closes
// its in-process one when the test ends.
func (c *grpcClient) Close() error {
	c.mu.Lock()
	srv := c.host
	c.host, c.closed = nil, true
	c.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
	return nil
}

func (c *grpcClient) Handle(ctx context.Context, r *Request) (Decision, Effects, error) {
	req := toPBRequest(r)
	resp, err := c.client.Handle(ctx, req, callOptions()...)
	if err != nil {
		return Decision{}, Effects{}, errorFromStatus(ctx, "plugin "+req.GetStage(), err)
	}
	return fromPBHandleResponse(resp)
}

// Deliver also checks that there is one result per recipient.
func (c *grpcClient) Deliver(ctx context.Context, d *Delivery) ([]DeliveryResult, error) {
	resp, err := c.client.Deliver(ctx, &pb.DeliverRequest{Delivery: toPBDelivery(d)}, callOptions()...)
	if err != nil {
		return nil, errorFromStatus(ctx, "plugin deliver", err)
	}
	results, err := fromPBDeliveryResults(resp.GetResults())
	if err != nil {
		return nil, err
	}
	if d != nil && len(results) != len(d.Recipients) {
		return nil, fmt.Errorf("sdk: plugin deliver: %d results for %d recipients: %w", len(results), len(d.Recipients), ErrProtocol)
	}
	return results, nil
}
