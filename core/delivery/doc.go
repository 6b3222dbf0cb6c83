// Package delivery owns turning queued messages into delivered ones: the
// scheduler that picks due messages from core/queue, per-destination
// concurrency limits, the retry schedule with its delay warnings and
// expiry, queuing delivery status notifications (bounces, built by
// core/dsn) to the envelope sender, and the transports that hand a message
// to its next hop.
//
// The parts:
//
//   - Engine (engine.go, engine_job.go, engine_admin.go): leases due
//     messages, splits each into one Job per destination domain, runs the
//     predelivery hook, calls the route's Transport within the connection
//     limits, records every recipient's outcome in the spool, schedules
//     the next attempt, queues DSNs, and deletes finished messages. New
//     mail arrives by Enqueue; retries are found by walking the spool's
//     schedule.
//   - Transports (transport.go): SMTP (smtp_transport.go: MX look-up with
//     fail-over, STARTTLS policy (smtp_policy.go), connection reuse, and
//     TLS session resumption for new connections, a bounded cache per TLS
//     level (smtp_sessions.go)), LMTP (lmtp.go, no TLS) and Maildir
//     (maildir_transport.go over core/maildir).
//   - Held domains (hold.go): hold_domains and the operator's holds
//     (stored in the spool's key-value store), whose mail waits without an
//     attempt until released, flushed once by ETRN, or expired.
//   - DSNs (bounce.go, engine_record.go): which recipients want one
//     (NOTIFY), the report built by core/dsn queued through the spool, and
//     never a DSN to the null sender. Bounces go out with the job that
//     failed; success reports (RFC 3461) once per message and round, for
//     what the transports say they did (Result.Handoff): "delivered" into
//     a Maildir or to an LMTP server without DSN, "relayed" to a next hop
//     without DSN, none when the next hop took NOTIFY on.
//
// Nothing but in-flight leases lives only in memory (besides the SMTP
// transport's idle connections and TLS sessions, whose loss only makes
// the next connections slower): after a crash every unfinished message is
// due again (at-least-once). The package holds no global state.
package delivery
