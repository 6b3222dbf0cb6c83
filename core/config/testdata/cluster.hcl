listener "mx" {
  address = "127.0.0.1:2525"
}

cluster {
  node       = "gw1"                                  # unique per node; default: hostname
  nats_urls  = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223", "nats://127.0.0.1:4224"]
  replicas   = 3                                      # JetStream replicas of the queue copy and the shared state
  # credentials_file = "gw.creds"                     # NATS auth; tls { ca = "…" cert = "…" key = "…" }
  # takeover_after   = "30s"                          # a node silent this long has its queued mail taken over
}
