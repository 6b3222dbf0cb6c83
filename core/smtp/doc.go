// Package smtp owns the SMTP wire protocol for both directions: the command
// parser, the Reply type with enhanced status codes, the strict DATA reader
// (no SMTP smuggling), the server session state machine with its limits and
// timeouts, and the outbound client (DATA or BDAT, SMTP or LMTP) used by
// `gateway send`, `gateway bench` and the delivery engine. Policy comes from a hook.Dispatcher and storage
// from a Spool; this package decides neither.
package smtp
