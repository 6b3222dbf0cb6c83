// Package delivery owns turning queued messages into delivered ones: the
// scheduler that picks due messages from core/queue, per-destination
// concurrency limits and connection reuse, the retry schedule with its delay
// warnings and expiry, RFC 3464 delivery status notifications (bounces) to
// the envelope sender, and the transports that hand a message to its next
// hop (SMTP to an MX or a static route, LMTP, and a local Maildir).
//
// What exists so far are two self-contained pieces the engine is built from:
//
//   - DSN builds a delivery status notification (multipart/report with a
//     human part, a message/delivery-status part and the returned original),
//     with Wants deciding from a recipient's NOTIFY whether one is asked for
//     and StatusFromReply mapping an SMTP reply to an enhanced status code.
//   - Maildir writes a message into a Maildir the standard way (tmp/, fsync,
//     link into new/, fsync new/).
//
// The package holds no global state: every value it uses is a field of a
// value the caller builds.
package delivery
