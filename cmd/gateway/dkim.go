package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailgate/gateway/core/dkim"
	"github.com/mailgate/gateway/core/envelope"
)

const dkimSynopsis = "<command>\n\n" +
	"Commands:\n" +
	"  keygen -domain D -selector S [-algorithm rsa|ed25519] [-bits 2048] [-out DIR]\n" +
	"                       write a signing key to DIR/D.S.pem and print the DNS TXT record to publish"

// runDKIM is `gateway dkim …`.
func runDKIM(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "dkim", dkimSynopsis)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch sub := fs.Arg(0); sub {
	case "keygen":
		return runDKIMKeygen(c, fs, fs.Args()[1:])
	case "":
	default:
		fmt.Fprintf(c.Stderr, "gateway dkim: unknown command %q\n", sub)
	}
	fs.Usage()
	return errUsage
}

// keygenOptions are the flags of `gateway dkim keygen`.
type keygenOptions struct {
	domain, selector, algorithm, out string
	bits                             int
}

// runDKIMKeygen makes a key, writes it to DIR/<domain>.<selector>.pem
// (PKCS#8 PEM, mode 0600, never over an existing file), prints the TXT
// record to publish on stdout and the dkim block to add on stderr.
func runDKIMKeygen(c *cli, cmd *flag.FlagSet, args []string) error {
	fs := newFlags(c, "dkim keygen", "-domain D -selector S [-algorithm rsa|ed25519] [-bits 2048] [-out DIR]")
	var o keygenOptions
	fs.StringVar(&o.domain, "domain", "", "the signing domain (d=), the From: domain or a parent of it")
	fs.StringVar(&o.selector, "selector", "", "the selector (s=): the record goes at SELECTOR._domainkey.DOMAIN")
	fs.StringVar(&o.algorithm, "algorithm", "rsa", "rsa or ed25519 (not every receiver verifies ed25519-sha256 yet)")
	fs.IntVar(&o.bits, "bits", 2048, "RSA key size in bits, 1024 to 4096")
	fs.StringVar(&o.out, "out", ".", "the folder to write the key file into (made if missing)")
	pos, err := parseVerbFlags(fs, cmd, args)
	if err != nil {
		return err
	}
	if err := o.check(pos); err != nil {
		fmt.Fprintf(c.Stderr, "gateway dkim keygen: %v\n", err)
		fs.Usage()
		return errUsage
	}
	k, err := dkim.GenerateKey(o.algorithm, o.bits)
	if err != nil {
		return err
	}
	path, err := writeKeyFile(o.out, o.domain+"."+o.selector+".pem", k)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.Stdout, k.TXT(o.selector, o.domain))
	fmt.Fprintf(c.Stderr, "gateway dkim keygen: wrote %s (%s). Publish the TXT record above, then add to gateway.hcl:\n\n"+
		"dkim %q {\n  selector = %q\n  key_file = %q\n}\n", path, k, o.domain, o.selector, path)
	return nil
}

// check validates the options and normalizes the names; pos are the
// arguments left after the flags (there must be none).
func (o *keygenOptions) check(pos []string) error {
	o.domain = strings.ToLower(strings.TrimSuffix(o.domain, "."))
	o.selector = strings.ToLower(o.selector)
	switch {
	case len(pos) > 0:
		return fmt.Errorf("unexpected argument %q", pos[0])
	case o.domain == "" || o.selector == "":
		return errors.New("-domain and -selector are required")
	case !envelope.ValidHost(o.domain) || strings.HasPrefix(o.domain, "["):
		return fmt.Errorf("-domain %q is not a domain name", o.domain)
	case !envelope.ValidHost(o.selector) || strings.HasPrefix(o.selector, "["):
		return fmt.Errorf("-selector %q is not a DNS name", o.selector)
	case o.algorithm != "rsa" && o.algorithm != "ed25519":
		return fmt.Errorf("-algorithm %q: want rsa or ed25519", o.algorithm)
	case o.algorithm == "rsa" && (o.bits < dkim.MinRSABits || o.bits > 4096):
		return fmt.Errorf("-bits %d: an RSA key has %d to 4096 bits", o.bits, dkim.MinRSABits)
	}
	return nil
}

// writeKeyFile writes k as dir/name, mode 0600, and refuses to replace a
// file that is there: it may be a key in use.
func writeKeyFile(dir, name string, k *dkim.Key) (string, error) {
	pemBytes, err := k.PEM()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("%s exists; not overwritten (remove it, or choose another selector)", path)
	}
	if err != nil {
		return "", err
	}
	_, err = f.Write(pemBytes)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return path, nil
}
