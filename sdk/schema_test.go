package sdk

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func testSchema() Info {
	return Info{Schema: []ConfigField{
		{Name: "file", Type: TypeString, Required: true},
		{Name: "limit", Type: TypeNumber, Default: 10.0},
		{Name: "strict", Type: TypeBool, Default: true},
		{Name: "lists", Type: TypeList},
		{Name: "tags", Type: TypeMap},
	}}
}

func TestValidateConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  map[string]any
		want []string // fields named, in order
	}{
		{"minimal", map[string]any{"file": "/etc/aliases"}, nil},
		{"all go types", map[string]any{"file": "f", "limit": 3, "strict": false, "lists": []string{"a"}, "tags": map[string]string{"a": "b"}}, nil},
		{"json types", map[string]any{"file": "f", "limit": 3.5, "lists": []any{"a"}, "tags": map[string]any{"a": "b"}}, nil},
		{"empty list and map", map[string]any{"file": "f", "lists": []any{}, "tags": map[string]any{}}, nil},
		{"missing required", map[string]any{}, []string{"file"}},
		{"nil config", nil, []string{"file"}},
		{"unknown", map[string]any{"file": "f", "nope": 1}, []string{"nope"}},
		{"wrong types", map[string]any{"file": 1, "limit": "10", "strict": "yes", "lists": "a", "tags": []string{"a"}},
			[]string{"file", "limit", "lists", "strict", "tags"}},
		{"list of numbers", map[string]any{"file": "f", "lists": []any{"a", 1.0}}, []string{"lists"}},
		{"map of bools", map[string]any{"file": "f", "tags": map[string]any{"a": true}}, []string{"tags"}},
		{"null value", map[string]any{"file": nil}, []string{"file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range testSchema().ValidateConfig(tt.cfg) {
				got = append(got, e.Field)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("fields named (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApplyDefaults(t *testing.T) {
	in := map[string]any{"file": "f", "strict": false}
	got := testSchema().ApplyDefaults(in)
	want := map[string]any{"file": "f", "strict": false, "limit": 10.0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if len(in) != 2 {
		t.Errorf("ApplyDefaults changed its argument: %v", in)
	}
}

func TestValidateSchema(t *testing.T) {
	tests := []struct {
		name string
		f    []ConfigField
		ok   bool
	}{
		{"good", testSchema().Schema, true},
		{"empty", nil, true},
		{"no name", []ConfigField{{Type: TypeString}}, false},
		{"duplicate", []ConfigField{{Name: "a", Type: TypeString}, {Name: "a", Type: TypeBool}}, false},
		{"bad type", []ConfigField{{Name: "a", Type: "int"}}, false},
		{"default of wrong type", []ConfigField{{Name: "a", Type: TypeNumber, Default: "1"}}, false},
		{"list default of numbers", []ConfigField{{Name: "a", Type: TypeList, Default: []int{1}}}, false},
		{"required with default", []ConfigField{{Name: "a", Type: TypeString, Required: true, Default: "x"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Info{Schema: tt.f}.ValidateSchema()
			if (err == nil) != tt.ok {
				t.Errorf("got %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

type hooks struct{}

func (hooks) Info() Info { return Info{} }
func (hooks) Helo(context.Context, *Request) (Decision, Effects, error) {
	return Decision{}, Effects{}, nil
}
func (hooks) Predelivery(context.Context, *Request) (Decision, Effects, error) {
	return Decision{}, Effects{}, nil
}
func (hooks) Notify(context.Context, *Request) error { return nil }

func TestStagesOf(t *testing.T) {
	want := []Stage{StageHelo, StagePredelivery, StageDelivered, StageDeferred, StageBounced, StageDisconnect}
	if diff := cmp.Diff(want, StagesOf(hooks{})); diff != "" {
		t.Errorf("stages (-want +got):\n%s", diff)
	}
	if got := StagesOf(struct{}{}); got != nil {
		t.Errorf("no hooks: got %v, want none", got)
	}
}
