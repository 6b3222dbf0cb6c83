# The gateway as the accept benchmark runs it: one listener, the durable
# spool (fsync on every commit, shared by group commit), no hooks.
hostname = "bench.test"
data_dir = "data"   # run.sh points this at a fresh temporary folder

listener "mx" {
  address                = "127.0.0.1:2527"
  max_connections_per_ip = 200
}

domains = ["example.test"]

log { level = "warn" }
