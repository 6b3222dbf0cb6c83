# A gateway.hcl with a planted fault for TestDocExamplesFlagBad: the first
# commented example loads once uncommented, the second (line 9) does not.
listener "mx" {
  address = "127.0.0.1:0"
  # max_recipients = 10
}

# Logging, on one line, which HCL refuses: a one-line block has one setting.
# log { level = "info"  format = "text" }
