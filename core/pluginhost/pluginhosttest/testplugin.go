package pluginhosttest

import "fmt"

// TestPluginConfig is the part of a gateway.hcl that runs core/pluginhost's
// test plugin (testdata/testplugin: it rejects blocked@ with "<greeting>:
// blocked", accepts count@ with a counter kept in the host's KV, and
// provides transport "testtransport") built at bin: in the pipeline at
// rcpt, with mail for example.test delivered by its transport into outdir,
// and an admin API on loopback. Tests that run the plugin in a gateway,
// in-process or as a process, add the listener and domains around it.
func TestPluginConfig(bin, greeting, outdir string) string {
	return fmt.Sprintf(`
admin { address = "127.0.0.1:0" }
delivery {
  route "example.test" { transport = "testtransport" }
}
pipeline = ["plugin.policy"]
plugin "policy" {
  path     = %q
  timeout  = "2s"
  on_error = "defer"
  match { stage = ["rcpt"] }
  config {
    greeting = %q
    outdir   = %q
  }
}
`, bin, greeting, outdir)
}
