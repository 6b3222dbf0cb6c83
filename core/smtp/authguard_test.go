package smtp_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/authguard"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// guardedServer is a server that offers AUTH in the clear to alice
// (password "secret") under guard, changed by mod.
func guardedServer(t *testing.T, guard *authguard.Guard, mod func(*smtp.Options)) *smtp.Server {
	t.Helper()
	opt := baseOptions()
	opt.Listener.AuthInsecure = true
	opt.Auth = passwords(t)
	opt.AuthGuard = guard
	opt.Log = slog.New(slog.DiscardHandler)
	opt.Spool = &smtptest.MemorySpool{}
	if mod != nil {
		mod(&opt)
	}
	srv, err := smtp.NewServer(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv
}

// authAs runs one session from client on srv (over a pipe, through
// ServeConn): EHLO, then AUTH PLAIN for user and pass; it returns the
// AUTH's reply as "code text".
func authAs(t *testing.T, srv *smtp.Server, client, user, pass string) string {
	t.Helper()
	server, conn := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(server, netip.MustParseAddrPort(client), "") }()
	defer func() {
		conn.Close()
		if err := <-done; err != nil {
			t.Errorf("ServeConn: %v", err)
		}
	}()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	tp := textproto.NewConn(conn)
	var reply string
	for _, line := range []string{"", "EHLO client.test", "AUTH PLAIN " + authPlain(user, pass)} {
		if line != "" {
			if err := tp.PrintfLine("%s", line); err != nil {
				t.Fatal(err)
			}
		}
		code, msg, err := tp.ReadResponse(0)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		lines := strings.Split(msg, "\n")
		reply = fmt.Sprintf("%d %s", code, lines[len(lines)-1])
	}
	return reply
}

const (
	authOK        = "235 2.7.0 Authentication successful"
	authInvalid   = "535 5.7.8 Authentication credentials invalid"
	authLocked    = "454 4.7.0 Too many authentication failures, try again later"
	authTemporary = "454 4.7.0 Temporary authentication failure"
)

// TestAuthGuardNetworks: failures count per IPv6 /64 and per IPv4
// address, through the session's client address.
func TestAuthGuardNetworks(t *testing.T) {
	srv := guardedServer(t, authguard.New(authguard.Options{FailureLimit: 2, Lockout: time.Hour}), nil)
	for i, step := range []struct{ client, pass, want string }{
		{"[2001:db8:1:2::a]:1025", "guess", authInvalid},
		{"[2001:db8:1:2:ffff::b]:1025", "guess", authInvalid},
		{"[2001:db8:1:2::c]:1025", "secret", authLocked},
		{"[2001:db8:1:3::a]:1025", "secret", authOK},
		{"192.0.2.1:1025", "guess", authInvalid},
		{"192.0.2.2:1025", "guess", authInvalid},
		{"192.0.2.1:1026", "secret", authOK},
		{"[::ffff:192.0.2.1]:1027", "guess", authInvalid},
		{"192.0.2.1:1028", "secret", authLocked},
	} {
		if got := authAs(t, srv, step.client, "alice", step.pass); got != step.want {
			t.Fatalf("step %d, AUTH from %s: got %q, want %q", i, step.client, got, step.want)
		}
	}
}

// authFunc is an Authenticator made of a function.
type authFunc func(ctx context.Context, user, pass string) (bool, error)

func (f authFunc) Authenticate(ctx context.Context, user, pass string) (bool, error) {
	return f(ctx, user, pass)
}

// TestAuthGuardPool: checks run one at a time on a pool of one worker.
func TestAuthGuardPool(t *testing.T) {
	var running, most atomic.Int32
	slow := authFunc(func(ctx context.Context, user, pass string) (bool, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(5 * time.Millisecond)
		return pass == "secret", nil
	})
	srv := guardedServer(t, authguard.New(authguard.Options{Workers: 1}), func(o *smtp.Options) { o.Auth = slow })
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			if got := authAs(t, srv, fmt.Sprintf("192.0.2.%d:25", i+1), "alice", "secret"); got != authOK {
				t.Errorf("AUTH: %q", got)
			}
		})
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Fatalf("%d checks at once on one worker", most.Load())
	}
}

// TestAuthGuardBusy: a check that waits too long for a worker gets 454
// 4.7.0 and does not count as a failure.
func TestAuthGuardBusy(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	blocking := authFunc(func(ctx context.Context, user, pass string) (bool, error) {
		if calls.Add(1) == 1 {
			close(started)
			<-release
		}
		return pass == "secret", nil
	})
	guard := authguard.New(authguard.Options{FailureLimit: 1, Lockout: time.Hour, Workers: 1, MaxWait: 20 * time.Millisecond})
	srv := guardedServer(t, guard, func(o *smtp.Options) { o.Auth = blocking })
	held := make(chan string, 1)
	go func() { held <- authAs(t, srv, "192.0.2.1:25", "alice", "secret") }()
	<-started
	if got := authAs(t, srv, "192.0.2.2:25", "alice", "guess"); got != authTemporary {
		t.Fatalf("AUTH with the only worker busy: %q, want %q", got, authTemporary)
	}
	close(release)
	if got := <-held; got != authOK {
		t.Fatalf("the held AUTH: %q", got)
	}
	if got := authAs(t, srv, "192.0.2.2:25", "alice", "secret"); got != authOK {
		t.Fatalf("AUTH after a busy pool: %q, want %q (a busy pool is no failure)", got, authOK)
	}
}

// TestAuthGuardHookVerdicts: an auth hook's Reject and Drop count as
// failures; its Defer does not.
func TestAuthGuardHookVerdicts(t *testing.T) {
	for _, tc := range []struct {
		verdict     sdk.Decision
		reply, then string
	}{
		{sdk.RejectDecision(535, sdk.EnhancedCode{5, 7, 8}, "No"), "535 5.7.8 No", authLocked},
		{sdk.Decision{Verdict: sdk.Drop}, authInvalid, authLocked},
		{sdk.DeferDecision(454, sdk.EnhancedCode{4, 7, 0}, "Later"), "454 4.7.0 Later", authOK},
	} {
		t.Run(tc.reply, func(t *testing.T) {
			var first atomic.Bool
			first.Store(true)
			h := hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
				if req.Stage == sdk.StageAuth && first.Swap(false) {
					return tc.verdict, sdk.Effects{}
				}
				return sdk.Decision{}, sdk.Effects{}
			})
			guard := authguard.New(authguard.Options{FailureLimit: 1, Lockout: time.Hour})
			srv := guardedServer(t, guard, func(o *smtp.Options) { o.Hooks = h })
			if got := authAs(t, srv, "192.0.2.1:25", "alice", "secret"); got != tc.reply {
				t.Fatalf("AUTH the hook answers: %q, want %q", got, tc.reply)
			}
			if got := authAs(t, srv, "192.0.2.1:26", "alice", "secret"); got != tc.then {
				t.Fatalf("AUTH after: %q, want %q", got, tc.then)
			}
		})
	}
}

// TestAuthGuardLockedDuringExchange: a client locked out while it was in
// an AUTH exchange is refused when the exchange ends, and no password is
// checked.
func TestAuthGuardLockedDuringExchange(t *testing.T) {
	var checks atomic.Int32
	counting := authFunc(func(ctx context.Context, user, pass string) (bool, error) {
		checks.Add(1)
		return pass == "secret", nil
	})
	guard := authguard.New(authguard.Options{FailureLimit: 1, Lockout: time.Hour})
	srv := guardedServer(t, guard, func(o *smtp.Options) { o.Auth = counting })
	server, conn := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(server, netip.MustParseAddrPort("192.0.2.1:25"), "") }()
	defer func() { conn.Close(); <-done }()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	tp := textproto.NewConn(conn)
	for _, step := range []struct {
		line, want string
		then       func()
	}{
		{"", "220", nil},
		{"EHLO client.test", "250", nil},
		{"AUTH LOGIN", "334 VXNlcm5hbWU6", nil},
		{b64("alice"), "334 UGFzc3dvcmQ6", func() {
			// Another session of the client fails meanwhile.
			if got := authAs(t, srv, "192.0.2.1:26", "alice", "guess"); got != authInvalid {
				t.Fatalf("the other session: %q", got)
			}
		}},
		{b64("secret"), authLocked, nil},
	} {
		if step.line != "" {
			tp.PrintfLine("%s", step.line)
		}
		code, msg, err := tp.ReadResponse(0)
		if got := fmt.Sprintf("%d %s", code, msg); err != nil || !strings.HasPrefix(got, step.want) {
			t.Fatalf("%q: got %q (%v), want %q", step.line, got, err, step.want)
		}
		if step.then != nil {
			step.then()
		}
	}
	if n := checks.Load(); n != 1 {
		t.Fatalf("%d password checks, want 1 (the other session's)", n)
	}
}
