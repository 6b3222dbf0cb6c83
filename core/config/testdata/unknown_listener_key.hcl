hostname = "mx.example.test"

# The error example of the issue: a typo in a listener key.

listener "mx" {
  max_recipients = 100
  adress = "127.0.0.1:2525"
}
