package main

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/queue/queuetest"
)

// spoolDamage is a damage `gateway serve` must refuse to start on, with
// the words its message must hold.
type spoolDamage struct {
	name  string
	apply func(testing.TB, string)
	words []string
}

// setUp fills a spool in a new data_dir, damages it, writes a
// configuration for it, and returns those and a snapshot of its files.
func (d spoolDamage) setUp(t *testing.T) (spool, cfg string, before map[string]string) {
	t.Helper()
	data := t.TempDir()
	spool = filepath.Join(data, "queue")
	queuetest.Fill(t, spool, 90)
	d.apply(t, spool)
	return spool, writeConfig(t, data, ""), queuetest.Snapshot(t, data)
}

// spoolDamages are the damages of queuetest, and an empty or missing
// spool.db beside bodies.
func spoolDamages() []spoolDamage {
	check := "gateway spool check -config"
	out := []spoolDamage{
		{"0-byte spool.db", queuetest.Empty, []string{"new or empty", "30 message bodies", "-accept-empty-spool"}},
		{"missing spool.db", queuetest.Remove, []string{"new or empty", "30 message bodies", "-accept-empty-spool"}},
	}
	for _, d := range queuetest.Damages() {
		out = append(out, spoolDamage{d.Name, d.Apply, []string{"is damaged", d.Word, check}})
	}
	return out
}

// TestServeDamagedSpool: `gateway serve` on a damaged spool, or on an
// empty or missing spool.db beside spilled bodies, exits 1 with a message
// that names spool.db, says what is wrong and what to do, and changes no
// file. (Before, the first three crashed it with SIGBUS or a panic and
// the last two deleted every spilled body.)
func TestServeDamagedSpool(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	for _, tt := range spoolDamages() {
		t.Run(tt.name, func(t *testing.T) {
			spool, cfg, before := tt.setUp(t)
			code, stderr := runGatewayExit(t, "serve", "-config", cfg)
			words := append([]string{"gateway serve: ", queuetest.DB(spool)}, tt.words...)
			for _, w := range words {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if code != 1 {
				t.Errorf("exit status %d, want 1; stderr:\n%s", code, stderr)
			}
			if after := queuetest.Snapshot(t, filepath.Dir(spool)); !maps.Equal(before, after) {
				t.Errorf("files changed by a refused start:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// TestServeAcceptEmptySpool: with -accept-empty-spool the gateway starts on
// an empty spool.db beside bodies, and the bodies are in queue/orphans/.
func TestServeAcceptEmptySpool(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	data := t.TempDir()
	spool := filepath.Join(data, "queue")
	ids := queuetest.Fill(t, spool, 9)
	queuetest.Empty(t, spool)
	gw := startGateway(t, "serve", "-config", writeConfig(t, data, ""), "-accept-empty-spool")
	gw.cmd.Process.Signal(syscall.SIGTERM)
	if err := gw.cmd.Wait(); err != nil {
		t.Fatalf("gateway: %v; stderr:\n%s", err, gw.stderr.String())
	}
	for i, id := range ids {
		if i%3 != 2 {
			continue
		}
		_, data := queuetest.Body(i)
		if b, err := os.ReadFile(filepath.Join(spool, "orphans", id)); err != nil || string(b) != string(data) {
			t.Errorf("queue/orphans/%s: %d bytes, %v; want the body", id, len(b), err)
		}
		if !strings.Contains(gw.stderr.String(), "level=WARN") || !strings.Contains(gw.stderr.String(), id) {
			t.Errorf("no WARN naming %s in:\n%s", id, gw.stderr.String())
		}
	}
}

// TestSpoolCheckSalvage: `gateway spool check` says ok (exit 0) on a sound
// spool and lists the damage (exit 1) on a damaged one; `gateway spool
// salvage` copies what it can into a new spool that check finds sound;
// flags work after the verb, and -config finds the spool in data_dir.
func TestSpoolCheckSalvage(t *testing.T) {
	for _, tt := range append(spoolDamages(), spoolDamage{"sound", func(testing.TB, string) {}, nil}) {
		t.Run(tt.name, func(t *testing.T) {
			spool, cfg, before := tt.setUp(t)
			code, out, errOut := runCLI(t, "spool", "check", "-config", cfg)
			wantCode, state := 1, "damaged"
			if tt.words == nil {
				wantCode, state = 0, "ok"
			}
			if code != wantCode || !strings.HasPrefix(out, "spool "+spool+": "+state+"\n") {
				t.Errorf("spool check: exit %d, stdout:\n%s\nstderr %q; want %d and %q", code, out, errOut, wantCode, state)
			}

			dst := filepath.Join(t.TempDir(), "new")
			code, out, errOut = runCLI(t, "spool", "salvage", "-out", dst, "-dir", spool)
			if code != 0 || !strings.Contains(out, "copied into "+dst+": ") {
				t.Fatalf("spool salvage: exit %d, stdout:\n%s\nstderr %q", code, out, errOut)
			}
			t.Logf("salvage:\n%s", out)
			code, out, errOut = runCLI(t, "spool", "-dir", dst, "check")
			if code != 0 || !strings.HasPrefix(out, "spool "+dst+": ok\n") {
				t.Errorf("spool check of the salvaged spool: exit %d, stdout:\n%s\nstderr %q", code, out, errOut)
			}
			if after := queuetest.Snapshot(t, filepath.Dir(spool)); !maps.Equal(before, after) {
				t.Errorf("check or salvage changed the spool it read")
			}
		})
	}
}

func TestSpoolUsage(t *testing.T) {
	for _, args := range [][]string{
		{"spool"},
		{"spool", "frob"},
		{"spool", "salvage", "-dir", "x"},
		{"spool", "check", "extra"},
	} {
		if code, _, errOut := runCLI(t, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2; stderr %q", args, code, errOut)
		}
	}
	dst := t.TempDir()
	os.WriteFile(filepath.Join(dst, "x"), nil, 0o600)
	code, _, errOut := runCLI(t, "spool", "salvage", "-dir", t.TempDir(), "-out", dst)
	if code != 1 || !strings.Contains(errOut, "not empty") {
		t.Errorf("salvage into a folder that is not empty: exit %d, stderr %q; want 1 and the folder refused", code, errOut)
	}
}

// runGatewayExit runs `gateway args...` as a child process that must end
// by itself within a minute, and returns its exit status and stderr.
func runGatewayExit(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), envRunMain+"=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode(), stderr.String()
	}
	if err != nil {
		t.Fatalf("gateway %s: %v", strings.Join(args, " "), err)
	}
	return 0, stderr.String()
}
