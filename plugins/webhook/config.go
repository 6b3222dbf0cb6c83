package main

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mailgate/gateway/sdk"
)

const (
	defaultTimeout           = "10s"
	defaultMaxAttachmentSize = 10 << 20
)

func schema() []sdk.ConfigField {
	return []sdk.ConfigField{
		{Name: "url", Type: "string", Required: true,
			Description: "The http or https URL each message is POSTed to."},
		{Name: "headers", Type: "map(string)",
			Description: "HTTP header fields added to every request, e.g. Authorization."},
		{Name: "timeout", Type: "string", Default: defaultTimeout,
			Description: "How long one POST may take, response included; past it the delivery is deferred."},
		{Name: "max_attachment_size", Type: "number", Default: float64(defaultMaxAttachmentSize),
			Description: "Attachments larger than this many bytes (decoded) are listed without content_base64; 0 = no limit."},
		{Name: "include_raw", Type: "bool", Default: true,
			Description: "Send the whole message as raw_base64 too."},
	}
}

type config struct {
	url        *url.URL
	headers    http.Header
	timeout    time.Duration
	maxAttach  int64 // 0 = no limit
	includeRaw bool
}

func parseConfig(m map[string]any) (config, error) {
	cfg := sdk.Config(sdk.Info{Schema: schema()}.ApplyDefaults(m))
	c := config{headers: http.Header{}, includeRaw: cfg.Bool("include_raw")}
	var errs sdk.ConfigErrors
	if u, err := url.Parse(cfg.String("url")); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs.Add("url", "want an http:// or https:// URL, got %q", cfg.String("url"))
	} else {
		c.url = u
	}
	hs := cfg.Map("headers")
	for _, name := range slices.Sorted(maps.Keys(hs)) {
		value := hs[name]
		if !validHeaderName(name) {
			errs.Add("headers", "%q is not a header field name", name)
			continue
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			errs.Add("headers", "the value of %s has a line break", name)
			continue
		}
		c.headers.Set(name, value)
	}
	if d, err := cfg.Duration("timeout"); err != nil || d <= 0 {
		errs.Add("timeout", "want a positive duration such as \"10s\", got %q", cfg.String("timeout"))
	} else {
		c.timeout = d
	}
	if n := cfg.Number("max_attachment_size"); n < 0 || n != float64(int64(n)) {
		errs.Add("max_attachment_size", "want a whole number of bytes, 0 or more, got %v", n)
	} else {
		c.maxAttach = int64(n)
	}
	if err := errs.Err(); err != nil {
		return config{}, err
	}
	return c, nil
}

// validHeaderName reports whether s is an HTTP field name (an RFC 9110
// token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
