# The gateway as the accept benchmark runs it: one listener, the durable
# spool (fsync on every commit, shared by group commit), no hooks.
# Its next hop is down (a closed loopback port), so what is measured is how
# fast the gateway absorbs mail while the queue builds up: the first
# message is tried and finds the destination down, and each later one is
# queued parked for an hour as it is committed, without an attempt.
hostname = "bench.test"
data_dir = "data"   # run.sh points this at a fresh temporary folder

listener "mx" {
  address                = "127.0.0.1:2527"   # run.sh sets the port
  max_connections_per_ip = 200
}

domains = ["example.test"]

delivery {
  route "*" { via = "127.0.0.1:9" }
  retry = ["1h"]
}

log { level = "warn" }
