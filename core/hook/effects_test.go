package hook

import (
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/sdk"
)

// TestEffectStages pins the stage × effect table of DESIGN.md (Hook
// points): which stages take which effect.
func TestEffectStages(t *testing.T) {
	const (
		m, r, cmd, d, p = sdk.StageMail, sdk.StageRcpt, sdk.StageCommand, sdk.StageData, sdk.StagePredelivery
	)
	every := sdk.Stages
	want := map[Effect][]sdk.Stage{
		EffectAddHeaders:    {d, p},
		EffectRemoveHeaders: {d, p},
		EffectRecipients:    {r, d, p},
		EffectSender:        {m, d, p},
		EffectBody:          {d, p},
		EffectRoute:         {p},
		EffectReplyLines:    {cmd},
		EffectNotes:         every,
		EffectSkip:          every,
	}
	if len(want) != int(numEffects) {
		t.Fatalf("the test knows %d effects, the table %d", len(want), numEffects)
	}
	for e, stages := range want {
		if got := e.Stages(); !slices.Equal(got, stages) {
			t.Errorf("%s.Stages() = %q, want %q", e, got, stages)
		}
		for _, st := range sdk.Stages {
			if got, want := e.TakenAt(st), slices.Contains(stages, st); got != want {
				t.Errorf("%s.TakenAt(%s) = %v, want %v", e, st, got, want)
			}
		}
	}
	if Effect(numEffects).TakenAt(d) || Effect(numEffects).Stages() != nil {
		t.Errorf("an unknown effect is taken somewhere")
	}
}

// effectFields returns the fields of the struct type typ that no Effect
// names (its name in snake case).
func effectFields(typ reflect.Type) []string {
	var missing []string
	for f := range typ.Fields() {
		var snake strings.Builder
		for i, c := range f.Name {
			if unicode.IsUpper(c) && i > 0 {
				snake.WriteByte('_')
			}
			snake.WriteRune(unicode.ToLower(c))
		}
		if !slices.Contains(effectNames[:], snake.String()) {
			missing = append(missing, f.Name)
		}
	}
	return missing
}

// TestEveryEffectIsChecked fails when sdk.Effects or Effects gains a field
// that the stage table does not know (checkEffects would drop it without a
// word). The known-bad fixture shows that it flags one.
func TestEveryEffectIsChecked(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[sdk.Effects](), reflect.TypeFor[Effects]()} {
		if missing := effectFields(typ); len(missing) > 0 {
			t.Errorf("%s: fields %q have no Effect in the stage table", typ, missing)
		}
	}
	type withExtra struct {
		AddHeaders []sdk.HeaderField
		Priority   int
	}
	if got := effectFields(reflect.TypeFor[withExtra]()); !slices.Equal(got, []string{"Priority"}) {
		t.Errorf("known-bad fixture: got %q, want [Priority]", got)
	}
}

func TestCheckEffects(t *testing.T) {
	all := sdk.Effects{
		AddHeaders:    []sdk.HeaderField{{Name: "X-A", Value: "1"}},
		RemoveHeaders: []string{"X-B"},
		Recipients:    []sdk.Address{{Local: "a", Domain: "example.org"}},
		Sender:        &sdk.Address{},
		Body:          []byte{},
		Notes:         map[string]string{"n": "1"},
		Skip:          []string{"lua.x"},
		Route:         &sdk.Route{Transport: "lmtp", Via: "[::1]:24"},
		ReplyLines:    []string{"line"},
	}
	a := envelope.Address{Local: "a", Domain: "example.org"}
	null := envelope.Address{}
	notes := map[string]string{"h/n": "1"}
	tests := []struct {
		stage sdk.Stage
		want  Effects
		off   []Effect
	}{
		{sdk.StageConnect, Effects{Notes: notes, Skip: all.Skip},
			[]Effect{EffectAddHeaders, EffectRemoveHeaders, EffectBody, EffectReplyLines, EffectRecipients, EffectSender, EffectRoute}},
		{sdk.StageMail, Effects{Sender: &null, Notes: notes, Skip: all.Skip},
			[]Effect{EffectAddHeaders, EffectRemoveHeaders, EffectBody, EffectReplyLines, EffectRecipients, EffectRoute}},
		{sdk.StageRcpt, Effects{Recipients: []envelope.Address{a}, Notes: notes, Skip: all.Skip},
			[]Effect{EffectAddHeaders, EffectRemoveHeaders, EffectBody, EffectReplyLines, EffectSender, EffectRoute}},
		{sdk.StageCommand, Effects{ReplyLines: all.ReplyLines, Notes: notes, Skip: all.Skip},
			[]Effect{EffectAddHeaders, EffectRemoveHeaders, EffectBody, EffectRecipients, EffectSender, EffectRoute}},
		{sdk.StageData, Effects{AddHeaders: all.AddHeaders, RemoveHeaders: all.RemoveHeaders, Body: []byte{},
			Recipients: []envelope.Address{a}, Sender: &null, Notes: notes, Skip: all.Skip},
			[]Effect{EffectReplyLines, EffectRoute}},
		{sdk.StagePredelivery, Effects{AddHeaders: all.AddHeaders, RemoveHeaders: all.RemoveHeaders, Body: []byte{},
			Recipients: []envelope.Address{a}, Sender: &null, Notes: notes, Skip: all.Skip, Route: all.Route},
			[]Effect{EffectReplyLines}},
	}
	for _, tt := range tests {
		t.Run(string(tt.stage), func(t *testing.T) {
			got, off, err := checkEffects(tt.stage, "h", false, all)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("effects (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.off, off); diff != "" {
				t.Errorf("removed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckEffectsRecipients(t *testing.T) {
	addr := func(l, d string) sdk.Address { return sdk.Address{Local: l, Domain: d} }
	got, _, err := checkEffects(sdk.StageRcpt, "h", true, sdk.Effects{Recipients: []sdk.Address{
		addr("alice", "example.org"), addr("bob", "example.org"), addr("Alice", "EXAMPLE.ORG"),
		addr("jörg", "bücher.example"), addr("JÖRG", "bücher.example"), addr("x", "[192.0.2.1]"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []envelope.Address{{Local: "alice", Domain: "example.org"}, {Local: "bob", Domain: "example.org"},
		{Local: "jörg", Domain: "bücher.example"}, {Local: "x", Domain: "[192.0.2.1]"}}
	if diff := cmp.Diff(want, got.Recipients); diff != "" {
		t.Errorf("recipients (-want +got):\n%s", diff)
	}
}

func TestCheckEffectsErrors(t *testing.T) {
	long := strings.Repeat("k", MaxNoteKey)
	many := make(map[string]string, MaxNotes+1)
	for i := range MaxNotes + 1 {
		many[strconv.Itoa(i)] = ""
	}
	crowd := make([]sdk.Address, MaxRecipients+1)
	for i := range crowd {
		crowd[i] = sdk.Address{Local: "u" + strconv.Itoa(i), Domain: "example.org"}
	}
	tests := []struct {
		name  string
		stage sdk.Stage
		utf8  bool
		eff   sdk.Effects
	}{
		{"too many recipients", sdk.StageRcpt, false, sdk.Effects{Recipients: crowd}},
		{"recipient without domain", sdk.StageRcpt, false, sdk.Effects{Recipients: []sdk.Address{{Local: "x"}}}},
		{"null recipient", sdk.StageData, false, sdk.Effects{Recipients: []sdk.Address{{}}}},
		{"recipient with a space", sdk.StageRcpt, false, sdk.Effects{Recipients: []sdk.Address{{Local: "a b", Domain: "example.org"}}}},
		{"UTF-8 without SMTPUTF8", sdk.StageRcpt, false, sdk.Effects{Recipients: []sdk.Address{{Local: "jörg", Domain: "example.org"}}}},
		{"source route", sdk.StageRcpt, true, sdk.Effects{Recipients: []sdk.Address{{Local: "@relay.example:x", Domain: "example.org"}}}},
		{"two @", sdk.StageRcpt, true, sdk.Effects{Recipients: []sdk.Address{{Local: "a@b", Domain: "example.org"}}}},
		{"text after the path", sdk.StageRcpt, true, sdk.Effects{Recipients: []sdk.Address{{Local: "a", Domain: "b>c"}}}},
		{"bad sender", sdk.StageMail, false, sdk.Effects{Sender: &sdk.Address{Local: "a", Domain: "-x-"}}},
		{"route via without port", sdk.StagePredelivery, false, sdk.Effects{Route: &sdk.Route{Via: "mx.example"}}},
		{"route transport with a space", sdk.StagePredelivery, false, sdk.Effects{Route: &sdk.Route{Transport: "a b"}}},
		{"route via with CRLF", sdk.StagePredelivery, false, sdk.Effects{Route: &sdk.Route{Via: "a:1\r\n"}}},
		{"note key too long", sdk.StageRcpt, false, sdk.Effects{Notes: map[string]string{long: ""}}},
		{"note value too long", sdk.StageRcpt, false, sdk.Effects{Notes: map[string]string{"k": strings.Repeat("v", MaxNoteValue+1)}}},
		{"too many notes", sdk.StageRcpt, false, sdk.Effects{Notes: many}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := checkEffects(tt.stage, "h", tt.utf8, tt.eff)
			if !errors.Is(err, ErrBadEffect) {
				t.Errorf("err = %v, want ErrBadEffect", err)
			}
		})
	}
	// The same mistakes at a stage that does not take the effect are only
	// removed.
	if _, off, err := checkEffects(sdk.StageHelo, "h", false, sdk.Effects{Recipients: []sdk.Address{{}}}); err != nil || len(off) != 1 {
		t.Errorf("off-stage bad recipient: off %v, err %v; want removed, no error", off, err)
	}
}

func TestNotesNamespace(t *testing.T) {
	got, err := notes("plugin.x", map[string]string{"plugin.x/a": "1", "b": "2", "lua.y/c": "3"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"plugin.x/a": "1", "plugin.x/b": "2", "plugin.x/lua.y/c": "3"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("notes (-want +got):\n%s", diff)
	}
}

func TestMergeNotes(t *testing.T) {
	base := map[string]string{"a/x": "1"}
	if got := MergeNotes(base, nil); !reflect.DeepEqual(got, base) {
		t.Errorf("MergeNotes(base, nil) = %v", got)
	}
	got := MergeNotes(base, map[string]string{"a/x": "2", "b/y": "3"})
	if want := map[string]string{"a/x": "2", "b/y": "3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("MergeNotes = %v, want %v", got, want)
	}
	if base["a/x"] != "1" || len(base) != 1 {
		t.Errorf("MergeNotes changed its base: %v", base)
	}
}
