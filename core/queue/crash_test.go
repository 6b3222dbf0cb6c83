package queue

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	crashDirEnv     = "QUEUE_CRASH_TEST_DIR"
	crashThreshold  = 4096
	crashGoroutines = 8
	// The child is killed once it has acknowledged crashCommits messages
	// (its goroutines are then mid-commit), whatever the machine's load;
	// crashPatience only bounds a child that makes no progress.
	crashCommits  = 100
	crashPatience = 2 * time.Minute
)

// crashBody derives a message's header and content from its ID, so that the
// parent can check every byte without hearing from the child.
func crashBody(id string) (header, data []byte) {
	h := fnv.New32a()
	h.Write([]byte(id))
	size := int(h.Sum32() % (3 * crashThreshold)) // a third of them spill
	return []byte("X-Crash-ID: " + id + "\r\n"), content(id, size)
}

// TestCrashChild is the child half of TestCrash: it commits messages from
// several goroutines until it is killed, printing each ID only after its
// Commit returned nil. Run on its own it skips.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("child of TestCrash only")
	}
	s, err := Open(dir, Options{SpillThreshold: crashThreshold})
	if err != nil {
		fmt.Fprintf(os.Stderr, "open: %v\n", err)
		os.Exit(2)
	}
	var mu sync.Mutex // one line per write to the pipe
	var wg sync.WaitGroup
	for range crashGoroutines {
		wg.Go(func() {
			for {
				d, err := s.Create(context.Background())
				if err != nil {
					fmt.Fprintf(os.Stderr, "create: %v\n", err)
					return
				}
				header, data := crashBody(d.ID())
				for p := data; len(p) > 0; p = p[min(len(p), 1000):] {
					d.Write(p[:min(len(p), 1000)])
				}
				if err := d.Commit(context.Background(), testEnvelope("bob@example.com"), header); err != nil {
					fmt.Fprintf(os.Stderr, "commit: %v\n", err)
					return
				}
				mu.Lock()
				os.Stdout.WriteString("committed " + d.ID() + "\n")
				mu.Unlock()
			}
		})
	}
	wg.Wait() // until SIGKILL
	os.Exit(3)
}

// TestCrash kills a child process that is committing messages and checks
// that every message whose Commit had returned is intact after reopening.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	ids := make(chan []string, 1)
	enough := make(chan struct{}) // closed at crashCommits acknowledgements
	// The reader is owned by this test; it ends at EOF, when the child is dead.
	go func() {
		var got []string
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "committed "); ok {
				got = append(got, id)
				if len(got) == crashCommits {
					close(enough)
				}
			}
		}
		ids <- got
	}()
	start := time.Now()
	select {
	case <-enough:
	case got := <-ids:
		cmd.Wait()
		t.Fatalf("child ended by itself (%v) after %d commits; stderr:\n%s", cmd.ProcessState, len(got), stderr.String())
	case <-time.After(crashPatience):
	}
	ran := time.Since(start)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	committed := <-ids
	cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v; stderr:\n%s", cmd.ProcessState, stderr.String())
	}
	if len(committed) < crashCommits {
		t.Fatalf("child acknowledged %d commits in %v, want %d; stderr:\n%s", len(committed), ran, crashCommits, stderr.String())
	}

	tmps, _ := filepath.Glob(filepath.Join(dir, "bodies", "*.tmp"))
	s := openSpool(t, dir, Options{SpillThreshold: crashThreshold})
	check := func(id string) {
		header, data := crashBody(id)
		want := append(header, data...)
		m, err := s.Get(id)
		if err != nil {
			t.Errorf("Get(%s): %v", id, err)
			return
		}
		if m.Size != int64(len(want)) {
			t.Errorf("Get(%s).Size: got %d, want %d", id, m.Size, len(want))
		}
		if got := readBody(t, s, id); !bytes.Equal(got, want) {
			t.Errorf("Body(%s): got %d bytes, want %d (not intact)", id, len(got), len(want))
		}
	}
	for _, id := range committed {
		check(id)
	}
	// Records whose Commit had not yet returned must be intact too.
	stored := 0
	s.List(func(m *Message) bool {
		stored++
		check(m.ID)
		return true
	})
	left, _ := filepath.Glob(filepath.Join(dir, "bodies", "*.tmp"))
	if len(left) != 0 {
		t.Errorf("temp files left after Open: %v", left)
	}
	t.Logf("child acknowledged %d commits in %v; after kill and reopen: %d stored (all acknowledged present and intact), %d temp files swept",
		len(committed), ran, stored, len(tmps))
	if stored < len(committed) {
		t.Errorf("stored %d < acknowledged %d", stored, len(committed))
	}
}
