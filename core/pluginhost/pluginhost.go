// Package pluginhost runs the gateway's out-of-process plugins: it starts
// a plugin executable with hashicorp/go-plugin over gRPC (checking its
// SHA-256 when one is configured and negotiating the protocol version),
// asks it for its Info, checks the HCL config block against the schema it
// reports, configures it, and then serves as its hook.Handler and as the
// delivery.Transport of each transport it provides. Hook calls go over
// the plugin's call channel (sdk.CallConn, a socket pair made in
// calls_unix.go), not a gRPC call each.
//
// A *Plugin owns its process. If the process exits, or a call fails
// because the plugin cannot be reached, the plugin is marked down: calls
// fail at once with an error wrapping sdk.ErrUnavailable (the hook chain
// applies the entry's on_error; a transport defers), and a goroutine owned
// by the Plugin starts it again with exponential backoff (100ms doubling
// to 30s), running Info, the config check and Configure again. A plugin
// that hangs is bounded by each call's context deadline (the hook entry's
// timeout); after MaxTimeouts calls in a row time out, it is killed and
// restarted the same way. A plugin process does not outlive the gateway,
// even one killed with SIGKILL (process.go).
//
// The services a plugin may call back (sdk.Host) are the gateway's
// hostsvc.Services in the plugin's scope (host.go converts the types).
package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hostsvc"
	"github.com/mailgate/gateway/sdk"
)

// Defaults for Options.
const (
	DefaultBodyLimit    = 1 << 20 // bytes of body sent with a data or predelivery request
	DefaultStartTimeout = 10 * time.Second
	DefaultMaxTimeouts  = 3
	DefaultMinBackoff   = 100 * time.Millisecond
	DefaultMaxBackoff   = 30 * time.Second

	// stableAfter is how long an instance must have run for the restart
	// backoff to start again from MinBackoff.
	stableAfter = 10 * time.Second
	// exitPoll is how often the supervisor looks whether the process has
	// exited (go-plugin offers no channel for it).
	exitPoll = 100 * time.Millisecond
)

// Options configure a Plugin.
type Options struct {
	Name   string // the block's label, without "plugin."
	Path   string // the executable
	SHA256 string // hex SHA-256 the executable must have; "" = not checked
	Log    *slog.Logger
	// Services are what the plugin may call back (DNS, the durable and
	// ephemeral key-value stores, logs), in the plugin's own scope (its
	// keys are stored as "plugin.<Name>/<key>"). Nil = services without a
	// resolver or a durable store (their calls fail), with an in-memory
	// ephemeral store of the plugin's own, logging to Log.
	Services *hostsvc.Services
	// Config is the plugin's config block as config.PluginHook.Config has
	// it (string, int64, float64, bool, []any, map[string]any). It is
	// checked against the schema the plugin reports (sdk.Info's
	// ValidateConfig) and handed to Configure with the schema's defaults
	// filled in; the sdk gives the plugin the schema's Go types.
	Config map[string]any
	// ConfigFile and ConfigLine name the config block (or the plugin
	// block), ConfigLines the line of each setting, for diagnostics:
	// "file:line: plugin "name": config: field: message".
	ConfigFile  string
	ConfigLine  int
	ConfigLines map[string]int

	BodyLimit    int64         // body bytes sent at data and predelivery; <= 0 = DefaultBodyLimit
	StartTimeout time.Duration // process start, handshake, Info and Configure; <= 0 = DefaultStartTimeout
	MaxTimeouts  int           // calls in a row that time out before a restart; <= 0 = DefaultMaxTimeouts
	MinBackoff   time.Duration // first wait before a restart; <= 0 = DefaultMinBackoff
	MaxBackoff   time.Duration // longest wait between restarts; <= 0 = DefaultMaxBackoff
}

// Errors a caller may branch on (errors.Is). Failures of the plugin
// itself wrap sdk.ErrUnavailable (down, restarting, closed) and
// sdk.ErrProtocol (no common protocol version).
var (
	ErrChecksum = errors.New("pluginhost: checksum mismatch")
	ErrClosed   = errors.New("pluginhost: plugin closed")
)

// Plugin is a running plugin: a hook.Handler at the stages it declared,
// and the provider of its transports. It is safe for concurrent use.
type Plugin struct {
	opt  Options
	name string // "plugin.<Name>"
	log  *slog.Logger
	host sdk.Host
	sum  []byte   // the SHA-256 wanted; nil = not checked
	info sdk.Info // as reported at Start

	mu       sync.Mutex
	cur      *instance // nil while down
	timeouts int       // calls of cur in a row that timed out
	closed   bool
	parts    sync.Pool     // *requestParts, for the calls' requests
	downCh   chan string   // a call marked cur down: why (buffered 1)
	done     chan struct{} // closed by Close
	wg       sync.WaitGroup
}

// instance is one process of the plugin.
type instance struct {
	client  *process
	rpc     plugin.ClientProtocol
	remote  sdk.Remote
	calls   *sdk.CallConn // hook calls; nil = over gRPC (remote.Handle)
	started time.Time
}

// handle runs one hook call, on the call channel if there is one.
func (inst *instance) handle(ctx context.Context, r *sdk.Request) (sdk.Decision, sdk.Effects, error) {
	if inst.calls != nil {
		return inst.calls.Handle(ctx, r)
	}
	return inst.remote.Handle(ctx, r)
}

// kill stops the process and closes its call channel.
func (inst *instance) kill() {
	inst.client.Kill()
	if inst.calls != nil {
		inst.calls.Close()
	}
}

var (
	_ hook.Handler = (*Plugin)(nil)
	_ hook.Stager  = (*Plugin)(nil)
)

// Start launches the plugin, checks its protocol version and its config
// block against the schema it reports, and configures it. The plugin runs
// until Close. Errors name the plugin; a config that does not fit the
// schema gives a *ConfigError, a plugin built for another protocol version
// an error wrapping sdk.ErrProtocol, a binary whose SHA-256 differs one
// wrapping ErrChecksum. ctx bounds the start only.
func Start(ctx context.Context, opt Options) (*Plugin, error) {
	if opt.Name == "" {
		return nil, errors.New("pluginhost: start: no name")
	}
	p := &Plugin{
		opt:    opt,
		name:   "plugin." + opt.Name,
		downCh: make(chan string, 1),
		done:   make(chan struct{}),
	}
	p.log = opt.Log
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("hook", p.name)
	if p.opt.BodyLimit <= 0 {
		p.opt.BodyLimit = DefaultBodyLimit
	}
	if p.opt.StartTimeout <= 0 {
		p.opt.StartTimeout = DefaultStartTimeout
	}
	if p.opt.MaxTimeouts <= 0 {
		p.opt.MaxTimeouts = DefaultMaxTimeouts
	}
	if p.opt.MinBackoff <= 0 {
		p.opt.MinBackoff = DefaultMinBackoff
	}
	if p.opt.MaxBackoff <= 0 {
		p.opt.MaxBackoff = DefaultMaxBackoff
	}
	svc := opt.Services
	if svc == nil {
		svc = hostsvc.New(hostsvc.Options{Log: opt.Log})
	}
	p.host = host{svc.Plugin(opt.Name)}
	if opt.SHA256 != "" {
		sum, err := hex.DecodeString(opt.SHA256)
		if err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("pluginhost: %s: sha256 %q is not 64 hexadecimal digits", p.name, opt.SHA256)
		}
		p.sum = sum
	}
	inst, info, err := p.launch(ctx)
	if err != nil {
		return nil, err
	}
	p.info, p.cur = info, inst
	p.log.Info("plugin started", "path", opt.Path, "plugin_name", info.Name, "version", info.Version,
		"stages", stageList(info.Stages), "transports", info.Transports)
	p.wg.Add(1)
	go p.supervise(inst)
	return p, nil
}

// Name implements hook.Handler: "plugin.<Options.Name>".
func (p *Plugin) Name() string { return p.name }

// Stages implements hook.Stager: the stages the plugin declared at Start.
func (p *Plugin) Stages() []sdk.Stage { return slices.Clone(p.info.Stages) }

// Transports returns the names of the transports the plugin provides.
func (p *Plugin) Transports() []string { return slices.Clone(p.info.Transports) }

// Info returns what the plugin reported about itself at Start.
func (p *Plugin) Info() sdk.Info { return cloneInfo(p.info) }

// Close stops the plugin's process and its supervisor and waits for them.
// Calls after Close fail with an error wrapping ErrClosed and
// sdk.ErrUnavailable.
func (p *Plugin) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.cur = nil
	close(p.done)
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// Handle implements hook.Handler: it sends the request to the plugin
// (with the message's header and up to BodyLimit bytes of its body at the
// data and predelivery stages) under ctx's deadline, and returns its
// decision and effects. Errors (the plugin failed, is down, timed out)
// are returned for the chain's on_error; the plugin's own "stage not
// handled" answers Continue.
func (p *Plugin) Handle(ctx context.Context, req *hook.Request) (sdk.Decision, sdk.Effects, error) {
	if !slices.Contains(p.info.Stages, req.Stage) {
		return sdk.Decision{}, sdk.Effects{}, nil
	}
	parts, err := p.request(req)
	if err != nil {
		return sdk.Decision{}, sdk.Effects{}, fmt.Errorf("%s: %w", p.name, err)
	}
	defer p.release(parts)
	inst, err := p.acquire()
	if err != nil {
		return sdk.Decision{}, sdk.Effects{}, err
	}
	d, eff, err := inst.handle(ctx, &parts.r)
	if err != nil {
		if errors.Is(err, sdk.ErrNotHandled) && ctx.Err() == nil {
			p.succeeded(inst)
			p.log.Debug("plugin does not handle the stage it declared", "stage", req.Stage)
			return sdk.Decision{}, sdk.Effects{}, nil
		}
		return sdk.Decision{}, sdk.Effects{}, p.failed(ctx, inst, err)
	}
	p.succeeded(inst)
	return d, eff, nil
}

// acquire returns the running instance, or an error wrapping
// sdk.ErrUnavailable while the plugin is down or closed.
func (p *Plugin) acquire() (*instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return nil, fmt.Errorf("%s: %w: %w", p.name, ErrClosed, sdk.ErrUnavailable)
	case p.cur == nil:
		return nil, fmt.Errorf("%s: restarting: %w", p.name, sdk.ErrUnavailable)
	}
	return p.cur, nil
}

// succeeded records a call of inst that came back in time.
func (p *Plugin) succeeded(inst *instance) {
	p.mu.Lock()
	if p.cur == inst {
		p.timeouts = 0
	}
	p.mu.Unlock()
}

// failed classifies the error of a call of inst and returns it, wrapped:
// a call that ran out of time counts towards MaxTimeouts; a plugin that
// cannot be reached (its process exited, the connection broke) is marked
// down for the supervisor to restart.
func (p *Plugin) failed(ctx context.Context, inst *instance, err error) error {
	switch {
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		// gRPC's own timer may fire a moment before ctx's: its
		// DeadlineExceeded counts as a timeout too.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
			p.timedOut(inst)
		}
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			return fmt.Errorf("%s: %w (%v)", p.name, cerr, err)
		}
		return fmt.Errorf("%s: %w", p.name, err)
	case errors.Is(err, sdk.ErrUnavailable) && inst.unreachable():
		p.markDown(inst, "a call failed: "+err.Error())
		return fmt.Errorf("%s: %w", p.name, err)
	}
	p.succeeded(inst) // it answered, with an error of its own
	return fmt.Errorf("%s: %w", p.name, err)
}

// unreachable reports whether the process has exited or no longer
// answers go-plugin's health check: a call's ErrUnavailable may be the
// plugin's own answer (its backend is down), which is no reason to
// restart it.
func (inst *instance) unreachable() bool {
	return inst.client.Exited() || inst.rpc.Ping() != nil
}

// timedOut counts a call of inst that ran out of time; MaxTimeouts in a
// row mark it down (hung) so that the supervisor kills and restarts it.
func (p *Plugin) timedOut(inst *instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != inst {
		return
	}
	p.timeouts++
	if p.timeouts >= p.opt.MaxTimeouts {
		p.markDownLocked(inst, fmt.Sprintf("%d calls in a row timed out", p.timeouts))
	}
}

// markDown takes inst out of service (if it still is the current one) and
// tells the supervisor why.
func (p *Plugin) markDown(inst *instance, why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.markDownLocked(inst, why)
}

func (p *Plugin) markDownLocked(inst *instance, why string) {
	if p.cur != inst || p.closed {
		return
	}
	p.cur, p.timeouts = nil, 0
	select {
	case p.downCh <- why:
	default:
	}
}

// supervise owns the plugin's processes: it waits until the current one
// exits or is marked down, kills it, and starts a new one with backoff,
// until Close.
func (p *Plugin) supervise(inst *instance) {
	defer p.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("plugin supervisor panicked; the plugin stays down", "panic", r)
			p.mu.Lock()
			p.cur = nil
			p.mu.Unlock()
			if inst != nil {
				inst.kill()
			}
		}
	}()
	backoff := p.opt.MinBackoff
	for {
		why, closing := p.watch(inst)
		if closing {
			inst.kill()
			return
		}
		uptime := time.Since(inst.started)
		p.log.Warn("plugin down; restarting it", "why", why, "uptime", uptime.Round(time.Millisecond).String())
		inst.kill()
		inst = nil
		if uptime >= stableAfter {
			backoff = p.opt.MinBackoff
		}
		for inst == nil {
			select {
			case <-p.done:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, p.opt.MaxBackoff)
			next, info, err := p.relaunch()
			if err != nil {
				p.log.Error("plugin restart failed", "err", err, "next_try", backoff.String())
				continue
			}
			p.mu.Lock()
			if p.closed {
				p.mu.Unlock()
				next.kill()
				return
			}
			p.cur, p.timeouts = next, 0
			p.mu.Unlock()
			inst = next
			if !slices.Equal(info.Stages, p.info.Stages) || !slices.Equal(info.Transports, p.info.Transports) {
				p.log.Warn("the restarted plugin declares other stages or transports; the gateway keeps those of its start until a reload",
					"stages", stageList(info.Stages), "transports", info.Transports)
			}
			p.log.Info("plugin restarted", "plugin_name", info.Name, "version", info.Version)
		}
	}
}

// watch waits until inst's process exits or a call marks it down, and
// says why; closing is true when Close was called instead.
func (p *Plugin) watch(inst *instance) (why string, closing bool) {
	t := time.NewTicker(exitPoll)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return "", true
		case why := <-p.downCh:
			return why, false
		case <-t.C:
			if inst.client.Exited() {
				p.markDown(inst, "")
				select { // markDown may have queued a reason, or a call did
				case <-p.downCh:
				default:
				}
				return "the process exited", false
			}
		}
	}
}

// relaunch starts a new process for the supervisor, bounded by
// StartTimeout and by Close. There is no caller's context: the Plugin
// owns the restart, and Close ends it.
func (p *Plugin) relaunch() (*instance, sdk.Info, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return p.launch(ctx)
}

// launch starts a process and takes it through the handshake, Info, the
// config check and Configure.
func (p *Plugin) launch(ctx context.Context) (inst *instance, info sdk.Info, err error) {
	ctx, cancel := context.WithTimeout(ctx, p.opt.StartTimeout)
	defer cancel()
	proc, err := dial(p.opt.Path, workDir(p.opt.ConfigFile), p.sum, p.opt.StartTimeout, p.log)
	if err != nil {
		return nil, info, fmt.Errorf("pluginhost: %s: %w", p.name, err)
	}
	defer func() {
		if err != nil {
			proc.kill()
		}
	}()
	remote := proc.remote
	info, err = remote.Info(ctx) // checks the negotiated protocol version is among the plugin's
	if err != nil {
		return nil, info, fmt.Errorf("pluginhost: %s: %s: info: %w", p.name, p.opt.Path, err)
	}
	if err := info.ValidateSchema(); err != nil {
		return nil, info, fmt.Errorf("pluginhost: %s: %s: the plugin's schema: %w", p.name, p.opt.Path, err)
	}
	if errs := info.ValidateConfig(p.opt.Config); len(errs) > 0 {
		return nil, info, p.configError(info, errs)
	}
	if err := remote.Configure(ctx, info.ApplyDefaults(p.opt.Config), p.host); err != nil {
		if errs, ok := errors.AsType[sdk.ConfigErrors](err); ok && len(errs) > 0 {
			return nil, info, p.configError(info, errs)
		}
		if e, ok := errors.AsType[*sdk.ConfigError](err); ok {
			return nil, info, p.configError(info, sdk.ConfigErrors{e})
		}
		return nil, info, fmt.Errorf("pluginhost: %s: configure: %w", p.name, err)
	}
	proc.started = time.Now()
	return proc, info, nil
}

// dial starts the executable at path in the folder dir ("" = ours),
// with its call channel, and dispenses its sdk.Remote. The instance's
// started is left for the caller.
func dial(path, dir string, sum []byte, startTimeout time.Duration, log *slog.Logger) (*instance, error) {
	// An absolute path: exec would look a bare name up in $PATH.
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(abs); err != nil {
		return nil, err
	} else if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return nil, fmt.Errorf("%s is not an executable file", path)
	}
	cmd := pluginCmd(abs, dir)
	sockets, err := socketDir(cmd)
	if err != nil {
		return nil, err
	}
	calls, child, err := callChannel(cmd)
	if err != nil {
		removeSockets(sockets)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.VersionedPlugins(),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  sdk.DialOptions(),
		Logger:           newHCLogger(log),
		SyncStdout:       &lineLogger{log: log, msg: "plugin stdout"},
		SyncStderr:       &lineLogger{log: log, msg: "plugin stderr"},
		StartTimeout:     startTimeout,
		Managed:          false, // the Plugin owns its processes
		// cmd.Env has the gateway's environment already (pluginCmd):
		// go-plugin's copy after it would override what we set.
		SkipHostEnv: true,
	}
	if sum != nil {
		cfg.SecureConfig = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	client, err := startProcess(plugin.NewClient(cfg), sockets)
	if child != nil {
		child.Close() // the process has its copy
	}
	if err != nil {
		if calls != nil {
			calls.Close()
		}
		// Start has killed the process it started, if any.
		return nil, startError(path, sum, err)
	}
	inst := &instance{client: client}
	if calls != nil {
		inst.calls = sdk.NewCallConn(calls)
	}
	if err := inst.dispense(path, sum); err != nil {
		inst.kill()
		return nil, err
	}
	return inst, nil
}

// dispense connects to the started process and dispenses its sdk.Remote.
func (inst *instance) dispense(path string, sum []byte) error {
	rpc, err := inst.client.Client()
	if err != nil {
		return startError(path, sum, err)
	}
	raw, err := rpc.Dispense(sdk.PluginName)
	if err != nil {
		return fmt.Errorf("%s: dispense %q: %w", path, sdk.PluginName, sdk.StartError(err))
	}
	remote, ok := raw.(sdk.Remote)
	if !ok {
		return fmt.Errorf("%s: dispense %q: got a %T, not an sdk.Remote", path, sdk.PluginName, raw)
	}
	inst.rpc, inst.remote = rpc, remote
	return nil
}

// startError explains go-plugin's start errors: a checksum mismatch names
// both sums; a protocol mismatch (sdk.StartError reads it) both sides'
// versions, which go-plugin's text gives; anything else wraps
// sdk.ErrUnavailable.
func startError(path string, sum []byte, err error) error {
	if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
		got := "unreadable"
		if b, rerr := fileSHA256(path); rerr == nil {
			got = hex.EncodeToString(b)
		}
		return fmt.Errorf("%s: its SHA-256 is %s, the configuration wants %s; refusing to run it: %w",
			path, got, hex.EncodeToString(sum), ErrChecksum)
	}
	if errors.Is(err, ErrAddress) {
		return fmt.Errorf("%s: %w", path, err)
	}
	err = sdk.StartError(err)
	if errors.Is(err, sdk.ErrProtocol) {
		return fmt.Errorf("%s: the gateway speaks plugin protocol version %d; rebuild the plugin with a matching sdk: %w",
			path, sdk.ProtocolVersion, err)
	}
	return fmt.Errorf("%s: %w", path, err)
}

func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// Probe starts the plugin at path, asks for its Info and stops it: the
// handshake and Info only, without Configure. For `gateway plugin probe`.
func Probe(ctx context.Context, path string, log *slog.Logger) (sdk.Info, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultStartTimeout)
	defer cancel()
	inst, err := dial(path, "", nil, DefaultStartTimeout, log)
	if err != nil {
		return sdk.Info{}, fmt.Errorf("pluginhost: probe: %w", err)
	}
	defer inst.kill()
	info, err := inst.remote.Info(ctx)
	if err != nil {
		return sdk.Info{}, fmt.Errorf("pluginhost: probe %s: info: %w", path, err)
	}
	return info, nil
}

func stageList(stages []sdk.Stage) []string {
	out := make([]string, len(stages))
	for i, s := range stages {
		out[i] = string(s)
	}
	return out
}

func cloneInfo(i sdk.Info) sdk.Info {
	i.ProtocolVersions = slices.Clone(i.ProtocolVersions)
	i.Stages = slices.Clone(i.Stages)
	i.Schema = slices.Clone(i.Schema)
	i.Transports = slices.Clone(i.Transports)
	return i
}

// workDir is the folder a plugin runs in: the config file's, so that
// relative paths in a plugin's config block mean what every other relative
// path in gateway.hcl means. Without a config file (probe), the gateway's.
func workDir(configFile string) string {
	if configFile == "" {
		return ""
	}
	return filepath.Dir(configFile)
}

// pluginCmd is the command that starts a plugin in dir. Unless the gateway's own
// environment sets GOMAXPROCS, a plugin runs with GOMAXPROCS=1: a hook call
// is a short gRPC exchange, and on a small machine the hand-offs between a
// plugin's goroutines on several CPUs cost more than the call itself
// (BenchmarkPluginRcptCall on 2 vCPUs: about 240 µs, about 120 µs with one).
// A plugin that needs more CPUs for its own work can set it in main.
func pluginCmd(path, dir string) *exec.Cmd {
	cmd := exec.Command(path)
	cmd.Dir = dir
	dieWithParent(cmd)
	cmd.Env = os.Environ() // the whole environment: dial sets SkipHostEnv
	if _, set := os.LookupEnv("GOMAXPROCS"); !set {
		cmd.Env = append(cmd.Env, "GOMAXPROCS=1")
	}
	return cmd
}
