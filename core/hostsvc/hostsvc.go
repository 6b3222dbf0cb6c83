// Package hostsvc owns the services the gateway offers its hook handlers:
// DNS look-ups through the gateway's resolver, a key-value store of two
// kinds, and logging. It is written once, with one set of limits, error
// texts and semantics; Lua scripts reach it through the gw module
// (core/lua: gw.dns, gw.durable, gw.ephemeral, gw.log) and plugins through
// sdk.Host served over gRPC (core/pluginhost), and both adapters only
// convert arguments and results.
//
// The assembly builds one *Services (New) and hands it to every script and
// plugin; each handler works through its own Scope, in which its keys live
// under a prefix of its own ("<script>/" for lua.<script>,
// "plugin.<name>/" for plugin.<name>) and its log lines carry its name.
//
// The two kinds of key-value store:
//
//   - Durable: the spool's bbolt store (*queue.Spool). It survives a
//     restart, and every write is a disk commit before it returns:
//     greylisting triplets, anything that must not be forgotten.
//   - Ephemeral: an in-memory store (Memory) with expiry and bounds on
//     entries and bytes. It is lost on restart and may drop its
//     soonest-expiring entries when full, and a write never touches the
//     disk: rate counters, per-transaction marks.
//
// With a cluster block both are JetStream key-value buckets every node
// shares (core/cluster: the durable one on the NATS servers' disks, the
// ephemeral one in their memory), with the same semantics, so that a
// limit holds across nodes.
//
// New services (authentication results, TLS policy) belong here too: a
// field of Options, a method of Scope, and one conversion in each
// adapter.
package hostsvc

import (
	"log/slog"

	"github.com/mailgate/gateway/core/resolver"
)

// Options configure the Services.
type Options struct {
	// Resolver answers the look-ups; nil makes them fail with
	// ErrNoResolver.
	Resolver *resolver.Resolver
	// Durable is the store of the Durable kind: the spool
	// (*queue.Spool), or the cluster's shared bucket; nil makes its calls
	// fail with ErrNoStore (gateway check has no spool).
	Durable Store
	// Ephemeral is the store of the Ephemeral kind (the cluster's shared
	// memory bucket, with a cluster block); nil = a Memory with the
	// default bounds.
	Ephemeral Store
	// Log receives the handlers' log lines; nil = discard.
	Log *slog.Logger
}

// Services are the host services of one gateway. They are safe for
// concurrent use, hold no goroutine and need no closing (the stores given
// in Options belong to the caller).
type Services struct {
	resolver *resolver.Resolver
	stores   [kinds]Store
	log      *slog.Logger
}

// New returns the services over opt.
func New(opt Options) *Services {
	s := &Services{resolver: opt.Resolver, log: opt.Log}
	s.stores[Durable] = opt.Durable
	s.stores[Ephemeral] = opt.Ephemeral
	if s.stores[Ephemeral] == nil {
		s.stores[Ephemeral] = NewMemory(MemoryOptions{})
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Scope is one handler's view of the services. It is safe for concurrent
// use.
type Scope struct {
	svc    *Services
	prefix string       // prepended to every key
	log    *slog.Logger // with hook=<handler>
}

// Script returns the view of Lua script name (handler lua.<name>): its
// keys are stored as "<name>/<key>", as they always were.
func (s *Services) Script(name string) *Scope {
	return s.scope("lua."+name, name+"/")
}

// Plugin returns the view of plugin name (handler plugin.<name>): its keys
// are stored as "plugin.<name>/<key>".
func (s *Services) Plugin(name string) *Scope {
	return s.scope("plugin."+name, "plugin."+name+"/")
}

func (s *Services) scope(handler, prefix string) *Scope {
	return &Scope{svc: s, prefix: prefix, log: s.log.With("hook", handler)}
}
