# The accept benchmark with a compiled plugin: gateway.hcl plus the aliases
# plugin (plugins/aliases) answering rcpt for every message, over the
# plugin's call channel: one call per message, the cost of a plugin hook.
hostname = "bench.test"
data_dir = "data"   # run.sh points this at a fresh temporary folder

listener "mx" {
  address                = "127.0.0.1:2532"   # run.sh sets the port
  max_connections_per_ip = 200
}

domains = ["example.test"]

delivery {
  route "*" { via = "127.0.0.1:9" }
  retry = ["1h"]
}

pipeline = ["plugin.aliases"]

plugin "aliases" {
  path     = "gateway-plugin-aliases"   # run.sh builds it and makes this absolute
  timeout  = "2s"
  on_error = "defer"
  match { stage = ["rcpt"] }
  config {
    aliases_file = "aliases"   # run.sh writes it: no alias for the benchmark's recipient
    domain       = "example.test"
  }
}

log { level = "warn" }
