package main

import (
	"fmt"
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
	c := config{headers: http.Header{}, maxAttach: defaultMaxAttachmentSize, includeRaw: true}
	var errs sdk.ConfigErrors
	bad := func(field, format string, a ...any) {
		errs = append(errs, &sdk.ConfigError{Field: field, Message: fmt.Sprintf(format, a...)})
	}
	var known []string
	for _, f := range schema() {
		known = append(known, f.Name)
	}
	for _, k := range sortedKeys(m) {
		if !slices.Contains(known, k) {
			bad(k, "unknown setting; the settings are %s", strings.Join(known, ", "))
		}
	}
	switch v, ok := m["url"]; {
	case !ok:
		bad("url", "required")
	default:
		s, isString := v.(string)
		u, err := url.Parse(s)
		switch {
		case !isString:
			bad("url", "want a string, got %T", v)
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			bad("url", "want an http:// or https:// URL, got %q", s)
		default:
			c.url = u
		}
	}
	if v, ok := m["headers"]; ok {
		hs, ok := stringMap(v)
		if !ok {
			bad("headers", "want a map of strings, got %T", v)
		}
		for _, name := range sortedKeys(hs) {
			value := hs[name]
			if !validHeaderName(name) {
				bad("headers", "%q is not a header field name", name)
				continue
			}
			if strings.ContainsAny(value, "\r\n\x00") {
				bad("headers", "the value of %s has a line break", name)
				continue
			}
			c.headers.Set(name, value)
		}
	}
	timeout := defaultTimeout
	if v, ok := m["timeout"]; ok {
		s, ok := v.(string)
		if !ok {
			bad("timeout", "want a string, got %T", v)
		}
		timeout = s
	}
	if d, err := time.ParseDuration(timeout); err != nil || d <= 0 {
		bad("timeout", "want a positive duration such as \"10s\", got %q", timeout)
	} else {
		c.timeout = d
	}
	if v, ok := m["max_attachment_size"]; ok {
		n, ok := number(v)
		if !ok || n < 0 || n != float64(int64(n)) {
			bad("max_attachment_size", "want a whole number of bytes, 0 or more, got %v", v)
		} else {
			c.maxAttach = int64(n)
		}
	}
	if v, ok := m["include_raw"]; ok {
		b, ok := v.(bool)
		if !ok {
			bad("include_raw", "want a bool, got %T", v)
		}
		c.includeRaw = b
	}
	if len(errs) > 0 {
		return config{}, errs
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

// number accepts the host's float64 and any Go integer.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case uint64:
		return float64(n), true
	}
	return 0, false
}

func stringMap(v any) (map[string]string, bool) {
	switch v := v.(type) {
	case map[string]string:
		return v, true
	case map[string]any:
		out := make(map[string]string, len(v))
		for k, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out[k] = s
		}
		return out, true
	}
	return nil, false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
