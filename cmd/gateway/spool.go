package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/queue"
)

const spoolSynopsis = "[-config gateway.hcl | -dir PATH] <command>\n\n" +
	"The spool on disk, for when the gateway will not start on it; stop the\n" +
	"gateway first. Neither command changes the spool it reads.\n\n" +
	"Commands:\n" +
	"  check              read every record and body, report what is readable; exit 1 on damage\n" +
	"  salvage -out DIR   copy every readable message into a new spool in DIR\n\n" +
	"Flags (before or after the command):"

// problemsShown bounds the problems a report prints.
const problemsShown = 20

// runSpool is `gateway spool`: check or salvage the spool of a stopped
// gateway, reading it without bbolt (core/queue's Check and Salvage).
func runSpool(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "spool", spoolSynopsis)
	path := fs.String("config", defaultConfig, "configuration file whose data_dir holds the spool (data_dir/queue)")
	dir := fs.String("dir", "", "the spool's directory (data_dir/queue), instead of -config")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	switch verb := fs.Arg(0); verb {
	case "check":
		vf := newFlags(c, "spool check", "[-config gateway.hcl | -dir PATH]")
		if err := verbFlags(vf, fs, fs.Args()[1:]); err != nil {
			return err
		}
		return spoolCheck(c, *path, *dir)
	case "salvage":
		vf := newFlags(c, "spool salvage", "-out DIR [-config gateway.hcl | -dir PATH]")
		out := vf.String("out", "", "the new spool's directory, which must not exist or be empty")
		if err := verbFlags(vf, fs, fs.Args()[1:]); err != nil {
			return err
		}
		if *out == "" {
			fmt.Fprintln(c.Stderr, "gateway spool salvage: -out DIR is required")
			vf.Usage()
			return errUsage
		}
		return spoolSalvage(ctx, c, *path, *dir, *out)
	default:
		fmt.Fprintf(c.Stderr, "gateway spool: unknown command %q\n", verb)
		fs.Usage()
		return errUsage
	}
}

// verbFlags parses the flags of a verb that takes no arguments, and the
// command's, on either side of it.
func verbFlags(verb, cmd *flag.FlagSet, args []string) error {
	if _, err := parseVerbFlags(verb, cmd, nil); err != nil { // only adds cmd's flags to verb
		return err
	}
	return parseNoArgs(verb, args)
}

// spoolDir is dir, or else the spool of the configuration file's data_dir.
func spoolDir(configPath, dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	cfg, err := config.Load(configPath)
	if err != nil {
		return "", err
	}
	return filepath.Join(cfg.DataDir, "queue"), nil
}

func spoolCheck(c *cli, configPath, dir string) error {
	dir, err := spoolDir(configPath, dir)
	if err != nil {
		return err
	}
	r, err := queue.Check(dir)
	if err != nil {
		return err
	}
	printReport(c.Stdout, r)
	if r.Damaged() {
		if r.Messages > 0 {
			fmt.Fprintf(c.Stdout, "to copy the %d readable messages into a new spool: gateway spool salvage -dir %s -out DIR\n", r.Messages, dir)
		}
		return fmt.Errorf("%s is damaged", dir)
	}
	return nil
}

func spoolSalvage(ctx context.Context, c *cli, configPath, dir, out string) error {
	dir, err := spoolDir(configPath, dir)
	if err != nil {
		return err
	}
	r, err := queue.Salvage(ctx, dir, out)
	if r != nil {
		printReport(c.Stdout, r)
		fmt.Fprintf(c.Stdout, "copied into %s: %d messages, %d key-value entries\n", out, r.Copied, r.KV)
	}
	if err != nil {
		return err
	}
	if r.Loose > 0 {
		fmt.Fprintf(c.Stdout, "%d of them were found only in pages outside the tree and may have been delivered already:\n"+
			"they are held; review them with gateway queue ls and release each with gateway queue release ID\n", r.Loose)
	}
	fmt.Fprintf(c.Stdout, "%s is unchanged; to run on the copy, stop the gateway and put %s in its place\n", dir, out)
	return nil
}

// printReport prints what Check or Salvage found.
func printReport(w io.Writer, r *queue.Report) {
	state := "ok"
	if r.Damaged() {
		state = "damaged"
	}
	fmt.Fprintf(w, "spool %s: %s\n", r.Dir, state)
	for i, p := range r.Problems {
		if i == problemsShown {
			fmt.Fprintf(w, "  (and %d more)\n", len(r.Problems)-i)
			break
		}
		fmt.Fprintf(w, "  %s\n", p)
	}
	fmt.Fprintf(w, "messages: %d readable (%d with a body file, %d only in pages outside the tree), %d without a readable body\n",
		r.Messages, r.Spilled, r.Loose, r.Lost)
	fmt.Fprintf(w, "key-value entries: %d; body files with no record: %d\n", r.KV, r.Orphans)
}

// spoolAdvice adds to an error of gateway serve what the operator can do
// about a damaged or emptied spool.
func spoolAdvice(err error, configPath string) error {
	switch {
	case errors.Is(err, queue.ErrDamaged):
		return fmt.Errorf("%w\nnothing was changed; see what is readable: gateway spool check -config %s\n"+
			"copy it into a new spool: gateway spool salvage -config %s -out DIR", err, configPath, configPath)
	case errors.Is(err, queue.ErrEmptySpool):
		return fmt.Errorf("%w\nnothing was changed; if spool.db is lost for good, start with -accept-empty-spool "+
			"(the bodies are then moved to queue/orphans/)", err)
	}
	return err
}
