package smtp

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// refusalLogEvery is how often connections turned away at a limit are
// summed up in one log line while they go on.
const refusalLogEvery = time.Minute

// maxRefusalClients bounds the clients an interval's summary tells apart;
// refusals from more are counted but not told apart.
const maxRefusalClients = 1024

// refusalLog logs the connections the server turns away at a connection
// limit without letting a flood flood the log: the first after a quiet
// interval at INFO at once, each one after it at DEBUG, and those as one
// INFO summary per interval (how many, from how many clients, the busiest
// one). Its timer runs only while refusals go on, and stop ends it.
type refusalLog struct {
	log   *slog.Logger
	every time.Duration

	mu      sync.Mutex
	timer   *time.Timer        // non-nil while an interval is open
	count   int                // refusals in the open interval after its first
	clients map[netip.Addr]int // of count, per clientKey (at most maxRefusalClients)
	stopped bool
}

// refused logs one connection from ip turned away with sessions open.
func (r *refusalLog) refused(ip netip.Addr, sessions int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer == nil || r.stopped {
		r.log.Info("smtp: connection limit reached", "ip", ip, "sessions", sessions)
		if !r.stopped {
			r.timer = time.AfterFunc(r.every, r.summarize)
		}
		return
	}
	r.log.Debug("smtp: connection limit reached", "ip", ip, "sessions", sessions)
	r.count++
	key := clientKey(ip)
	if _, ok := r.clients[key]; ok || len(r.clients) < maxRefusalClients {
		if r.clients == nil {
			r.clients = make(map[netip.Addr]int)
		}
		r.clients[key]++
	}
}

// summarize ends an interval: its summary, if it had refusals after the
// first, and the next interval while they go on.
func (r *refusalLog) summarize() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	if r.count == 0 {
		r.timer = nil // quiet: the next refusal is logged at once
		return
	}
	r.logSummary()
	r.timer.Reset(r.every)
}

// stop ends the timer and logs the open interval's summary (Shutdown).
func (r *refusalLog) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	r.stopped = true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if r.count > 0 {
		r.logSummary()
	}
}

// logSummary logs the open interval's refusals and forgets them; r.mu is
// held.
func (r *refusalLog) logSummary() {
	var top netip.Addr
	for ip, n := range r.clients {
		if m := r.clients[top]; n > m || n == m && ip.Less(top) {
			top = ip
		}
	}
	r.log.Info("smtp: connections turned away at a limit", "count", r.count,
		"clients", len(r.clients), "top", top, "top_count", r.clients[top], "interval", r.every)
	r.count = 0
	clear(r.clients)
}
