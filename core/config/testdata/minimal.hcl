# Only what is required: one listener with an address. Everything else,
# hostname included (the test fixes the machine's name), is a default.
listener "mx" {
  address = "127.0.0.1:2525"
}
