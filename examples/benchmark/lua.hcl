# The accept benchmark with hooks: gateway.hcl plus one Lua script that
# answers rcpt (a domain look-up) and data (a header read) for every message.
hostname = "bench.test"
data_dir = "data"   # run.sh points this at a fresh temporary folder

listener "mx" {
  address                = "127.0.0.1:2529"   # run.sh sets the port
  max_connections_per_ip = 200
}

domains = ["example.test"]

delivery {
  route "*" { via = "127.0.0.1:9" }
  retry = ["1h"]
}

pipeline = ["lua.bench"]

lua "bench" {
  path    = "hooks.lua"   # run.sh makes this absolute
  timeout = "200ms"
}

log { level = "warn" }
