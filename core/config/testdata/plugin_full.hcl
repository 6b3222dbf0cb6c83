# A plugin block with every setting, a match block and a config block,
# another with only its path, interleaved with a lua block: without a
# pipeline they would run in file order; here the pipeline orders them.
hostname = "mx.example.test"
listener "mx" { address = "127.0.0.1:0" }

pipeline = ["plugin.aliases", "lua.relay", "plugin.minimal"]

plugin "minimal" {
  path = "bin/gateway-plugin-aliases"
}

lua "relay" { path = "scripts/relay.lua" }

plugin "aliases" {
  path     = "bin/gateway-plugin-aliases"
  sha256   = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
  timeout  = "500ms"
  on_error = "continue"
  match {
    stage            = ["rcpt", "command"]
    recipient_domain = ["example.test"]
    command          = ["rcpt", "EXPN", "RCPT"]
  }
  config {
    file    = "/etc/aliases"
    limit   = 10
    ratio   = 0.5
    strict  = true
    domains = ["example.test", "example.org"]
    headers = { "X-Alias" = "yes" }
    unset   = null # left out
  }
}
