// Package plugins holds the plugins shipped with the gateway, one folder
// each: a main package built as gateway-plugin-<name>, with the same files
// (main.go, <name>.go, config.go, <name>_test.go, README.md, testdata/).
// skeleton/ is the template for new ones. What two shipped plugins share
// lives in internal/ (address checks, who may use EXPN and VRFY, SRS),
// which only sdk and the standard library may feed: no core/.
//
// This package itself has no code, only the repository test that keeps
// the READMEs honest (readme_test.go). It reads each plugin's schema from
// <name>/testdata/schema.json, a golden file that the plugin's own test
// compares with its Info().Schema (go test ./plugins/<name> -update
// rewrites it), since a main package cannot be imported.
package plugins
