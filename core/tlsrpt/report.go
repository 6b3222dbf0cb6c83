package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Report is the aggregate report of §4.4, as sent.
type Report struct {
	OrganizationName string         `json:"organization-name"`
	DateRange        DateRange      `json:"date-range"`
	ContactInfo      string         `json:"contact-info"`
	ReportID         string         `json:"report-id"`
	Policies         []PolicyResult `json:"policies"`
}

// DateRange is the day a report covers, 00:00:00 to 23:59:59 UTC (§4.1).
type DateRange struct {
	Start time.Time `json:"start-datetime"`
	End   time.Time `json:"end-datetime"`
}

// PolicyResult is one policy of a report with its sessions.
type PolicyResult struct {
	Policy         Policy          `json:"policy"`
	Summary        Summary         `json:"summary"`
	FailureDetails []FailureDetail `json:"failure-details,omitempty"`
}

// Summary counts a policy's sessions.
type Summary struct {
	Successful int64 `json:"total-successful-session-count"`
	Failed     int64 `json:"total-failure-session-count"`
}

// FailureDetail is a Failure with the number of sessions that failed so.
type FailureDetail struct {
	Failure
	Sessions int64 `json:"failed-session-count"`
}

// report is one domain's day, ready to send: the report, its gzipped JSON,
// and the names the mail and the file carry.
type report struct {
	Report
	domain   string // the policy domain in ASCII (A-labels), for headers and names
	gz       []byte
	filename string // §5.1
}

// build makes the report of k's counts c; ascii is k.domain in A-labels.
func (r *Reporter) build(k dayDomain, ascii string, c *counts) (*report, error) {
	start, err := time.Parse(time.DateOnly, k.day)
	if err != nil {
		return nil, fmt.Errorf("tlsrpt: report for %s: bad day %q", k.domain, k.day)
	}
	end := start.Add(24*time.Hour - time.Second)
	rep := &report{
		Report: Report{
			OrganizationName: r.org,
			DateRange:        DateRange{Start: start, End: end},
			ContactInfo:      r.from,
			ReportID:         start.Format("20060102") + "." + ascii + "@" + r.submitter,
			Policies:         c.Policies,
		},
		domain: ascii,
		filename: r.submitter + "!" + ascii + "!" + strconv.FormatInt(start.Unix(), 10) + "!" +
			strconv.FormatInt(end.Unix(), 10) + ".json.gz",
	}
	js, err := json.Marshal(&rep.Report)
	if err != nil {
		return nil, fmt.Errorf("tlsrpt: report for %s: %w", k.domain, err)
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(js); err != nil {
		return nil, fmt.Errorf("tlsrpt: report for %s: gzip: %w", k.domain, err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("tlsrpt: report for %s: gzip: %w", k.domain, err)
	}
	rep.gz = b.Bytes()
	return rep, nil
}
