package config

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
)

// Load reads and parses the configuration file at path. Relative paths in
// it (data_dir, TLS files) are resolved against the file's folder, and
// Config.File is path. A file that cannot be read gives an error wrapping
// the *fs.PathError; a file that does not load gives an *Error.
func Load(path string) (*Config, error) {
	return parser{hostname: os.Hostname}.load(path)
}

// LoadPartial is Load for a tool that reports every problem in one run
// (gateway check). When the file parses but some values are wrong it
// returns the configuration decoded so far, each wrong value left at its
// default, together with the *Error; the configuration is nil only when
// the file cannot be read or its structure is wrong. A partial
// configuration is for finding more problems, never for running.
func LoadPartial(path string) (*Config, error) {
	p := parser{hostname: os.Hostname, partial: true}
	return p.load(path)
}

// LoadSettings is Load for a client that any local user may run, such as
// `gateway sendmail`: it reads the configuration file and nothing else.
// The files the configuration names (TLS certificates and keys, password
// and token files, DKIM keys, hook scripts and plugins) are neither
// checked nor opened, and the secrets in them are left empty: those files
// are the server's, often readable by it alone. Its result is for reading
// settings (hostname, data_dir, limits, the admin address), never for
// running a server.
func LoadSettings(path string) (*Config, error) {
	p := parser{hostname: os.Hostname, skipFiles: true}
	return p.load(path)
}

// Parse parses a configuration held in memory. filename names it in
// diagnostics, and relative paths are resolved against its folder (the
// current folder when filename has none). Config.File is left empty. A
// configuration that does not load gives an *Error.
func Parse(src []byte, filename string) (*Config, error) {
	return parser{hostname: os.Hostname}.parse(src, filename)
}

// parser holds what parsing needs from the machine, so tests can fix it.
type parser struct {
	hostname  func() (string, error) // os.Hostname
	partial   bool                   // LoadPartial: return what decoded, with the errors
	skipFiles bool                   // LoadSettings: open no file the configuration names
}

func (p parser) load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := p.parse(src, path)
	if cfg != nil {
		cfg.File = path
	}
	return cfg, err
}

func (p parser) parse(src []byte, filename string) (*Config, error) {
	f, diags := hclparse.NewParser().ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, newError(diags)
	}
	// gohcl checks the structure: unknown or missing blocks and arguments.
	// Values are decoded below, each against its own range.
	var raw rawFile
	if diags := gohcl.DecodeBody(f.Body, nil, &raw); diags.HasErrors() {
		return nil, newError(diags)
	}
	d := &decoder{dir: filepath.Dir(filename), hostname: p.hostname, skipFiles: p.skipFiles}
	cfg := d.config(&raw, f.Body.MissingItemRange())
	if d.diags.HasErrors() {
		if p.partial {
			return &cfg, newError(d.diags)
		}
		return nil, newError(d.diags)
	}
	return &cfg, nil
}
