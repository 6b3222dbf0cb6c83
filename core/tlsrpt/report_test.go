package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var stsPolicy = Policy{
	Domain:  "Example.TEST.",
	Type:    TypeSTS,
	Strings: []string{"version: STSv1", "mode: enforce", "mx: *.example.test", "max_age: 86400"},
	MXHost:  "*.example.test",
}

// countSome makes the sessions every report test expects: under the STS
// policy 3 successes and 3 failures of two kinds, and one session with no
// policy that failed STARTTLS.
func countSome(r *Reporter) {
	ctx := context.Background()
	for range 3 {
		r.Success(ctx, stsPolicy)
	}
	expired := Failure{ResultType: ResultCertificateExpired, SendingMTAIP: "192.0.2.10",
		ReceivingMXHostname: "mx1.example.test", ReceivingIP: "198.51.100.1",
		ReasonCode: "x509: certificate has expired"}
	r.Failure(ctx, stsPolicy, expired)
	r.Failure(ctx, stsPolicy, expired)
	r.Failure(ctx, stsPolicy, Failure{ResultType: ResultCertificateHostMismatch,
		ReceivingMXHostname: "mx2.example.test", ReceivingIP: "2001:db8::2",
		AdditionalInfo: "https://gateway.example.org/tls/1"})
	r.Failure(ctx, Policy{Domain: "example.test"}, Failure{ResultType: ResultSTARTTLSNotSupported,
		ReceivingMXHostname: "mx3.example.test"})
}

// wantReport is the report of countSome, as JSON with the field names of
// RFC 8460 §4.4, decoded into plain maps so that the names are checked and
// not this package's struct tags.
const wantReport = `{
  "organization-name": "Example Org",
  "date-range": {"start-datetime": "2026-12-05T00:00:00Z", "end-datetime": "2026-12-05T23:59:59Z"},
  "contact-info": "tlsrpt@gateway.example.org",
  "report-id": "20261205.example.test@gateway.example.org",
  "policies": [
    {
      "policy": {
        "policy-type": "sts",
        "policy-string": ["version: STSv1", "mode: enforce", "mx: *.example.test", "max_age: 86400"],
        "policy-domain": "example.test",
        "mx-host": "*.example.test"
      },
      "summary": {"total-successful-session-count": 3, "total-failure-session-count": 3},
      "failure-details": [
        {
          "result-type": "certificate-expired",
          "sending-mta-ip": "192.0.2.10",
          "receiving-mx-hostname": "mx1.example.test",
          "receiving-ip": "198.51.100.1",
          "failed-session-count": 2,
          "failure-reason-code": "x509: certificate has expired"
        },
        {
          "result-type": "certificate-host-mismatch",
          "receiving-mx-hostname": "mx2.example.test",
          "receiving-ip": "2001:db8::2",
          "failed-session-count": 1,
          "additional-information": "https://gateway.example.org/tls/1"
        }
      ]
    },
    {
      "policy": {"policy-type": "no-policy-found", "policy-domain": "example.test"},
      "summary": {"total-successful-session-count": 0, "total-failure-session-count": 1},
      "failure-details": [
        {"result-type": "starttls-not-supported", "receiving-mx-hostname": "mx3.example.test", "failed-session-count": 1}
      ]
    }
  ]
}`

func checkReportJSON(t *testing.T, gz []byte) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("report is not gzip: %v", err)
	}
	js, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("report is not gzip: %v", err)
	}
	var got, want map[string]any
	if err := json.Unmarshal(js, &got); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, js)
	}
	if err := json.Unmarshal([]byte(wantReport), &want); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("report JSON (-want +got):\n%s", d)
	}
}

func mailReporter(t *testing.T, txt string) (*Reporter, *mailbox) {
	t.Helper()
	res, _ := newResolver(t, `_smtp._tls.example.test. 300 IN TXT "`+txt+`"`)
	mb := &mailbox{}
	c := newClock(now)
	r := New(Options{Organization: "Example Org", From: "tlsrpt@gateway.example.org",
		Resolver: res, Mail: mb.Mail, Now: c.Now})
	return r, mb
}

func TestReportByMail(t *testing.T) {
	r, mb := mailReporter(t, "v=TLSRPTv1; rua=mailto:tlsrpt@example.test,mailto:copy@example.net%2Ctlsrpt@example.test")
	countSome(r)
	if err := r.SendDay(context.Background(), day); err != nil {
		t.Fatalf("SendDay: %v", err)
	}
	sent := mb.Sent()
	if len(sent) != 1 {
		t.Fatalf("%d mails sent; want 1", len(sent))
	}
	if want := []string{"tlsrpt@example.test", "copy@example.net"}; sent[0].from != "tlsrpt@gateway.example.org" || !slices.Equal(sent[0].to, want) {
		t.Errorf("mail from %q to %q; want tlsrpt@gateway.example.org to %q", sent[0].from, sent[0].to, want)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(sent[0].msg))
	if err != nil {
		t.Fatalf("report mail does not parse: %v\n%s", err, sent[0].msg)
	}
	for name, want := range map[string]string{
		"From":                 "tlsrpt@gateway.example.org",
		"To":                   "tlsrpt@example.test, copy@example.net",
		"Subject":              "Report Domain: example.test Submitter: gateway.example.org Report-ID: <20261205.example.test@gateway.example.org>",
		"Message-Id":           "<20261205.example.test@gateway.example.org>",
		"Date":                 "Sat, 05 Dec 2026 15:04:00 +0000",
		"Tls-Report-Domain":    "example.test",
		"Tls-Report-Submitter": "gateway.example.org",
		"Tls-Required":         "No",
		"Auto-Submitted":       "auto-generated",
		"Mime-Version":         "1.0",
	} {
		if got := strings.Join(strings.Fields(msg.Header.Get(name)), " "); got != want {
			t.Errorf("%s: %q; want %q", name, got, want)
		}
	}
	checkReportJSON(t, reportAttachment(t, msg))
	if keys, _ := r.store.KVKeys(keyPrefix, r.now()); len(keys) != 0 {
		t.Errorf("after a delivered report the store holds %q; want nothing", keys)
	}
}

// reportAttachment checks the MIME structure of §5.3 and returns the
// decoded attachment.
func reportAttachment(t *testing.T, msg *mail.Message) []byte {
	t.Helper()
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Fatalf("Content-Type %q (%v); want multipart/report; report-type=tlsrpt", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	text, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if ct := text.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("first part is %q; want text/plain", ct)
	}
	att, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if ct := att.Header.Get("Content-Type"); ct != "application/tlsrpt+gzip" {
		t.Errorf("second part is %q; want application/tlsrpt+gzip", ct)
	}
	start, end := day.Unix(), day.Add(24*time.Hour-time.Second).Unix()
	wantName := "gateway.example.org!" + msg.Header.Get("TLS-Report-Domain") + "!" + strconv.FormatInt(start, 10) + "!" + strconv.FormatInt(end, 10) + ".json.gz"
	if att.FileName() != wantName {
		t.Errorf("attachment named %q; want %q", att.FileName(), wantName)
	}
	if cte := att.Header.Get("Content-Transfer-Encoding"); cte != "base64" {
		t.Errorf("attachment encoding %q; want base64", cte)
	}
	b64, err := io.ReadAll(att)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(b64)), "\r\n") {
		if len(line) > 76 {
			t.Errorf("base64 line of %d characters; want at most 76", len(line))
		}
	}
	gz, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(b64)), ""))
	if err != nil {
		t.Fatalf("attachment is not base64: %v", err)
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Errorf("a third part, or a bad end: %v", err)
	}
	return gz
}

// decodeMailedReport is the Report a report mail carries.
func decodeMailedReport(t *testing.T, raw []byte) *Report {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(reportAttachment(t, msg)))
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.NewDecoder(zr).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	return &rep
}

// TestInternationalDomain: a U-label domain is looked up, named in the
// headers and the file name, and identified by its A-label.
func TestInternationalDomain(t *testing.T) {
	res, _ := newResolver(t, `_smtp._tls.xn--bcher-kva.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:r@example.test"`)
	mb := &mailbox{}
	r := New(Options{Organization: "Example Org", From: "tlsrpt@gateway.example.org",
		Resolver: res, Mail: mb.Mail, Now: newClock(now).Now})
	r.Success(context.Background(), Policy{Domain: "bücher.test", Type: TypeNoPolicy})
	if err := r.SendDay(context.Background(), day); err != nil {
		t.Fatalf("SendDay: %v", err)
	}
	sent := mb.Sent()
	if len(sent) != 1 {
		t.Fatalf("%d mails; want 1", len(sent))
	}
	msg, err := mail.ReadMessage(bytes.NewReader(sent[0].msg))
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Header.Get("TLS-Report-Domain"); got != "xn--bcher-kva.test" {
		t.Errorf("TLS-Report-Domain %q; want the A-label", got)
	}
	rep := decodeMailedReport(t, sent[0].msg)
	if rep.ReportID != "20261205.xn--bcher-kva.test@gateway.example.org" || rep.Policies[0].Policy.Domain != "bücher.test" {
		t.Errorf("report-id %q, policy-domain %q", rep.ReportID, rep.Policies[0].Policy.Domain)
	}
}
