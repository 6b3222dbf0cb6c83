package envelope

import (
	"errors"
	"slices"
	"testing"
)

func TestNotifyNames(t *testing.T) {
	tests := []struct {
		n     Notify
		names []string
	}{
		{0, nil},
		{NotifyNever, []string{"NEVER"}},
		{NotifySuccess, []string{"SUCCESS"}},
		{NotifyDelay | NotifyFailure, []string{"FAILURE", "DELAY"}},
		{NotifySuccess | NotifyFailure | NotifyDelay, []string{"SUCCESS", "FAILURE", "DELAY"}},
		{NotifyNever | NotifySuccess, []string{"NEVER"}}, // not valid; NEVER wins
	}
	for _, tt := range tests {
		if got := tt.n.Names(); !slices.Equal(got, tt.names) {
			t.Errorf("Notify(%#b).Names() = %q; want %q", tt.n, got, tt.names)
		}
	}
}

func TestParseNotify(t *testing.T) {
	tests := []struct {
		in   string
		want Notify
		bad  bool
	}{
		{in: "NEVER", want: NotifyNever},
		{in: "never", want: NotifyNever},
		{in: "SUCCESS", want: NotifySuccess},
		{in: "delay,Failure", want: NotifyFailure | NotifyDelay},
		{in: "SUCCESS,FAILURE,DELAY", want: NotifySuccess | NotifyFailure | NotifyDelay},
		{in: "", bad: true},
		{in: "NEVER,SUCCESS", bad: true},
		{in: "SUCCESS,SUCCESS", bad: true},
		{in: "SUCCESS,", bad: true},
		{in: "ſUCCESS", bad: true}, // Unicode folding would take it for SUCCESS
		{in: "SOMETIMES", bad: true},
	}
	for _, tt := range tests {
		got, err := ParseNotify(tt.in)
		switch {
		case tt.bad && !errors.Is(err, ErrBadNotify):
			t.Errorf("ParseNotify(%q) = %v, %v; want an error wrapping ErrBadNotify", tt.in, got, err)
		case !tt.bad && (err != nil || got != tt.want):
			t.Errorf("ParseNotify(%q) = %#b, %v; want %#b", tt.in, got, err, tt.want)
		case !tt.bad:
			if back, err := ParseNotify(got.String()); err != nil || back != got {
				t.Errorf("ParseNotify(%q.String() = %q) = %#b, %v; want %#b", tt.in, got.String(), back, err, got)
			}
		}
	}
}
