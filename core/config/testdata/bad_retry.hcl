# Every bad duration in retry is reported at its own position.
hostname = "mx.example.test"

listener "mx" { address = "127.0.0.1:2525" }

delivery {
  retry = ["1m", "0s", "5 minutes", "-1h", "1h"]
}
