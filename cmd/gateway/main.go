// Command gateway is the one binary of the mail gateway: serve, check,
// send, sendmail (also run as sendmail or mailq), bench, sink, plugin, dkim, version. Wiring is explicit here; no package registers
// itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// cli is what a subcommand reads and writes instead of the process globals,
// so tests can run commands in-process.
type cli struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// command is one subcommand. It returns an error to print and exit 1, or
// errUsage (already explained on stderr) to exit 2.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, c *cli, args []string) error
}

var errUsage = errors.New("usage")

func commands() []command {
	return []command{
		{"serve", "run the gateway", runServe},
		{"check", "validate the configuration", runCheck},
		{"send", "submit a message from a file or stdin", runSend},
		{"sendmail", "sendmail(8) for local programs (-t -i -f -bs -bp -q …); also as sendmail or mailq", runSendmail},
		{"queue", "list and manage the queue through the admin API", runQueue},
		{"cluster", "the nodes of a cluster: status lists their heartbeats and queues", runCluster},
		{"spool", "check or salvage the spool on disk of a stopped gateway", runSpool},
		{"bench", "load generator: send many messages and report rates", runBench},
		{"sink", "accept and count mail, keep nothing", runSink},
		{"plugin", "plugin tools: probe PATH prints a plugin's info and schema", runPlugin},
		{"dkim", "DKIM tools: keygen writes a signing key and prints its DNS record", runDKIM},
		{"version", "print the version", runVersion},
	}
}

func main() {
	args := sendmailArgs(filepath.Base(os.Args[0]), os.Args[1:])
	if len(args) > 0 && (args[0] == "serve" || args[0] == "sink") {
		if err := keepTimerSlack(); err != nil { // on success it execs again
			fmt.Fprintf(os.Stderr, "gateway %s: warning: %v; running with the kernel's\n", args[0], err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &cli{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}, args)
	stop()
	os.Exit(code)
}

// run dispatches args to a subcommand and returns the exit code.
func run(ctx context.Context, c *cli, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(c.Stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, cmd := range commands() {
		if cmd.name != args[0] {
			continue
		}
		err := cmd.run(ctx, c, args[1:])
		if code, ok := asExitError(err); ok { // sendmail's sysexits
			fmt.Fprintf(c.Stderr, "gateway %s: %v\n", cmd.name, err)
			return code
		}
		switch {
		case err == nil:
			return 0
		case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
			return 2
		default:
			fmt.Fprintf(c.Stderr, "gateway %s: %v\n", cmd.name, err)
			return 1
		}
	}
	fmt.Fprintf(c.Stderr, "gateway: unknown command %q\n", args[0])
	usage(c.Stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: gateway <command> [flags]")
	fmt.Fprintln(w)
	for _, cmd := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintln(w, "\nRun 'gateway <command> -h' for a command's flags.")
}

// newFlags returns a flag set that reports errors on c.Stderr.
func newFlags(c *cli, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("gateway "+name, flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(c.Stderr, "usage: gateway %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and maps a parse failure to errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

// parseVerbFlags parses the arguments of a command's verb (gateway queue
// ls …) with the verb's flags and the command's own (cmd, already parsed
// up to the verb), so that a command's flags work on either side of the
// verb: `gateway queue ls -admin H:P` is `gateway queue -admin H:P ls`.
// Flags may come before, after or between the verb's arguments, which it
// returns. A verb's flag hides a command's flag of the same name.
func parseVerbFlags(verb, cmd *flag.FlagSet, args []string) ([]string, error) {
	cmd.VisitAll(func(f *flag.Flag) {
		if verb.Lookup(f.Name) == nil {
			verb.Var(f.Value, f.Name, f.Usage)
			verb.Lookup(f.Name).DefValue = f.DefValue
		}
	})
	return parseInterspersed(verb, args)
}

// parseInterspersed parses args with fs's flags wherever they stand among
// the positional arguments, which it returns in order; after "--" every
// argument is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if i := len(args) - len(rest); i > 0 && args[i-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// parseNoArgs parses the flags of a command that takes no other
// arguments: a stray word (a config path without -config, say) is a usage
// error, not silently ignored.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), pos[0])
		fs.Usage()
		return errUsage
	}
	return nil
}

func runVersion(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "version", "")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "gateway %s\n", version)
	return nil
}
