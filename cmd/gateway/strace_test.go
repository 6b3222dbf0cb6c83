package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/smtp"
)

// TestStraceFsyncBefore250 checks the durability promise where it is kept,
// in the system calls of `gateway serve` under strace: between the read
// that brings the end of a message's data and the write of its
// "250 2.0.0 Ok: queued as ID", the spool's database file is fdatasync'd
// to completion (bbolt syncs the pages, then the meta page). .ci/run
// installs strace; without it the test is skipped.
func TestStraceFsyncBefore250(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace is not installed (Debian: strace)")
	}
	data := t.TempDir()
	cfgPath := writeConfig(t, data, `delivery {
  route "*" { via = "127.0.0.1:9" }
  retry = ["1h"]
}`)
	trace := filepath.Join(t.TempDir(), "strace.log")
	gw := startGatewayUnder(t, []string{"strace", "-f", "-y", "-s", "256", "-e", "trace=read,write,fdatasync,fsync", "-o", trace},
		"serve", "-config", cfgPath)
	pid := tracedChild(t, gw.cmd.Process.Pid)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) }) // strace would leave it running

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := smtp.Dial(ctx, gw.addr, smtp.ClientOptions{LocalName: "client.test", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	env := &envelope.Envelope{Sender: envelope.Address{Local: "s", Domain: "load.test"},
		Recipients: []envelope.Recipient{{Address: envelope.Address{Local: "r", Domain: "example.test"}}}}
	res, err := c.Send(ctx, env, strings.NewReader("Subject: strace\r\n\r\nhello\r\n"))
	if err != nil || res.Data.Code != 250 || res.ID == "" {
		t.Fatalf("Send = %+v, %v; want 250 with a queue ID", res, err)
	}
	c.Quit(ctx)
	syscall.Kill(pid, syscall.SIGTERM)
	if err := gw.cmd.Wait(); err != nil {
		t.Fatalf("strace: %v; output:\n%s", err, gw.stderr.String())
	}

	log, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	syncs, err := syncsBefore250(string(log), res.ID)
	if err != nil {
		t.Fatalf("%v; strace log:\n%s", err, log)
	}
	if syncs < 2 {
		t.Errorf("%d fdatasync of spool.db completed between the end of the data and the 250, want 2 (pages, meta); strace log:\n%s", syncs, log)
	}
}

// tracedChild returns the PID of the process strace (pid) started.
func tracedChild(t *testing.T, pid int) int {
	t.Helper()
	for range 100 {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		var child int
		if _, err := fmt.Sscan(string(b), &child); err == nil {
			return child
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("strace (%d) has no child", pid)
	return 0
}

var (
	// The end of data arrives alone or after the body, in a read that
	// strace may split in two lines when another thread makes a call
	// meanwhile: "read(5<socket:…>,  <unfinished ...>", then
	// "<... read resumed>"…\r\n.\r\n", 4096) = 30".
	endOfDataRE = regexp.MustCompile(`(read\(\d+<socket:[^>]*>, |<\.\.\. read resumed>)"(.*\\r\\n)?\.\\r\\n"`)
	spoolSyncRE = regexp.MustCompile(`fdatasync\((\d+)<[^>]*spool\.db>`)
)

// syncsBefore250 reads an strace -f -y log and counts the fdatasync calls
// on spool.db that completed after the read of the end of data (a line
// ending with CRLF.CRLF) and before the write of the 250 naming id.
func syncsBefore250(log, id string) (int, error) {
	reply := "250 2.0.0 Ok: queued as " + id
	pending := map[string]bool{} // PIDs inside an unfinished fdatasync of spool.db
	started, syncs := false, 0
	for line := range strings.SplitSeq(log, "\n") {
		pid, call, _ := strings.Cut(line, " ")
		call = strings.TrimSpace(call)
		switch {
		case !started && endOfDataRE.MatchString(call):
			started = true
		case strings.HasPrefix(call, "write(") && strings.Contains(call, reply):
			if !started {
				return 0, fmt.Errorf("the 250 for %s came before the end of its data was read", id)
			}
			return syncs, nil
		case spoolSyncRE.MatchString(call) && strings.HasSuffix(call, "<unfinished ...>"):
			pending[pid] = true
		case spoolSyncRE.MatchString(call) && strings.HasSuffix(call, "= 0") && started:
			syncs++
		case strings.HasPrefix(call, "<... fdatasync resumed>") && pending[pid]:
			delete(pending, pid)
			if started && strings.HasSuffix(call, "= 0") {
				syncs++
			}
		}
	}
	return 0, fmt.Errorf("no write of %q in the strace log", reply)
}
