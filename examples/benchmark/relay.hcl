# The gateway as the relay benchmark runs it: accept with the durable spool,
# then deliver everything to a downstream `gateway sink` on 127.0.0.1:2627.
hostname = "bench.test"
data_dir = "data"   # run.sh points this at a fresh temporary folder

listener "mx" {
  address                = "127.0.0.1:2528"   # run.sh sets the port
  max_connections_per_ip = 200
}

relay { networks = ["127.0.0.0/8"] }

delivery {
  route "*" { via = "127.0.0.1:2627" }   # run.sh sets the port (DOWN_PORT)
}

log { level = "warn" }
