package hostsvc

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/mailgate/gateway/sdk"
)

// levels are the log levels a handler may name.
var levels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

func parseLevel(level string) (slog.Level, error) {
	l, ok := levels[level]
	if !ok {
		return 0, fmt.Errorf("hostsvc: log level %q is not debug, info, warn or error", cut(level, 20))
	}
	return l, nil
}

// LogEnabled reports whether a line at level would be written; it is
// true for a level that is not one, so that Log reports it.
func (sc *Scope) LogEnabled(ctx context.Context, level string) bool {
	l, err := parseLevel(level)
	return err != nil || sc.log.Enabled(ctx, l)
}

// Log writes msg at level ("debug", "info", "warn" or "error"; anything
// else is an error and nothing is written) with the handler's name, then
// attrs (what the adapter knows: the stage, the session), then the
// handler's fields: the first sdk.LogMaxFields in key order, string values
// cut at sdk.LogMaxValue bytes. The message is made one line and cut at
// sdk.LogMaxMessage bytes.
func (sc *Scope) Log(ctx context.Context, level, msg string, fields []slog.Attr, attrs ...slog.Attr) error {
	l, err := parseLevel(level)
	if err != nil {
		return err
	}
	if !sc.log.Enabled(ctx, l) {
		return nil
	}
	fields = slices.SortedStableFunc(slices.Values(fields), func(a, b slog.Attr) int { return cmp.Compare(a.Key, b.Key) })
	if len(fields) > sdk.LogMaxFields {
		fields = fields[:sdk.LogMaxFields]
	}
	all := make([]slog.Attr, 0, len(attrs)+len(fields))
	all = append(all, attrs...)
	for _, f := range fields {
		if f.Value.Kind() == slog.KindString {
			f.Value = slog.StringValue(cut(f.Value.String(), sdk.LogMaxValue))
		}
		all = append(all, f)
	}
	sc.log.LogAttrs(ctx, l, cut(oneLine(msg), sdk.LogMaxMessage), all...)
	return nil
}

// oneLine replaces control characters (CR and LF among them) with spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// cut shortens s to n bytes, saying how long it was.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}
