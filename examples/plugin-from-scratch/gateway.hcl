# examples/plugin-from-scratch: a gateway for example.test with one
# plugin, the greylisting plugin of ./greylist (a Go module of its own).
# README.md walks through writing it; build it first, from this folder:
#
#   cd greylist && go build -o ../bin/gateway-plugin-greylist . && cd ..
#
# then, from the repository root:
#
#   go run ./cmd/gateway serve -config examples/plugin-from-scratch/gateway.hcl
#
# transcript.txt is the conversation example_test.go replays against it.

hostname = "mx.example.test"
data_dir = "data" # relative to this file: examples/plugin-from-scratch/data

listener "mx" {
  address = "127.0.0.1:2531"
}

domains = ["example.test"]

# No relaying: mail from outside to example.test only.
relay {
  networks = []
}

delivery {
  # Accepted mail lands in Maildirs under data/mail/: alice's is
  # data/mail/example.test/alice/new/.
  route "example.test" {
    transport = "maildir"
    path      = "data/mail"
  }
}

pipeline = ["plugin.greylist"]

plugin "greylist" {
  # The executable, relative to this file.
  path = "bin/gateway-plugin-greylist"

  # The SHA-256 the executable must have; the gateway refuses to start a
  # binary that differs. Fill it in with `sha256sum bin/gateway-plugin-greylist`
  # once the build is the one you deploy (every rebuild changes it).
  # sha256 = "0f3c…"

  # Each call may take this long. Greylisting is one key-value read and
  # write in the gateway's own store, so 1s is plenty.
  timeout = "1s"

  # If the plugin fails, times out or is down, let the mail through:
  # greylisting is a filter, not a gate worth bouncing mail over.
  on_error = "continue"

  # Only at RCPT, and never for authenticated users (they are ours).
  match {
    stage         = ["rcpt"]
    authenticated = false
  }

  # Checked against the schema the plugin reports at start; each setting
  # shown is the default.
  config {
    delay = 60    # seconds before a retry is let through
    ttl   = "24h" # how long a (client, sender, recipient) triple is remembered
  }
}
