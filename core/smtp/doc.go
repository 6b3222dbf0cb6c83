// Package smtp owns the SMTP wire protocol for both directions: the command
// parser, the Reply type with enhanced status codes, the strict DATA reader
// (no SMTP smuggling), the server session state machine with its limits and
// timeouts, and the outbound client (DATA or BDAT, SMTP or LMTP) used by
// `gateway send`, `gateway bench` and the delivery engine. Policy comes from a hook.Dispatcher and storage
// from a Spool; this package decides neither.
//
// In front of a session it also owns the PROXY protocol header (HAProxy's
// proxy-protocol.txt v1 and v2, proxy.go), TLS from the first byte (RFC
// 8314 §3.3) and STARTTLS (RFC 3207); on both sides REQUIRETLS (RFC 8689
// §2, §4.1, §4.2.1) and, on the server, the TLS-Required header field
// (§5).
package smtp
