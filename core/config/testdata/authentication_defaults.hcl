# An empty authentication block: SPF and DKIM checked, DMARC reported, the
# hostname as authserv-id.
hostname = "gw.example.test"
listener "mx" { address = "127.0.0.1:0" }
authentication {}
