package scripts

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/sdk"
)

func loadScript(name string, params map[string]any) (*lua.Script, error) {
	src, err := os.ReadFile(name + ".lua")
	if err != nil {
		return nil, err
	}
	return lua.Load(lua.Options{Name: name, Source: string(src), Params: params})
}

// Each script loads without params and answers at the stages its header
// comment lists.
func TestScriptStages(t *testing.T) {
	tests := []struct {
		name   string
		stages []sdk.Stage
	}{
		{"relay", []sdk.Stage{sdk.StageMail, sdk.StageRcpt}},
		{"aliases", []sdk.Stage{sdk.StageRcpt, sdk.StageCommand, sdk.StageData}},
		{"lists", []sdk.Stage{sdk.StageRcpt, sdk.StageCommand, sdk.StageData}},
		{"translate", []sdk.Stage{sdk.StageMail, sdk.StageData, sdk.StagePredelivery}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := loadScript(tt.name, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := s.Stages(); !slices.Equal(got, tt.stages) {
				t.Errorf("stages %v, want %v", got, tt.stages)
			}
		})
	}
}

// Bad params fail the load, so that `gateway check` reports them, and not
// the first message.
func TestScriptBadParams(t *testing.T) {
	tests := []struct {
		name   string
		script string
		params map[string]any
		want   string
	}{
		{"relay: bad CIDR", "relay", map[string]any{"allow_networks": []any{"10.0.0.0/33"}}, "10.0.0.0/33"},
		{"relay: bad sender network", "relay", map[string]any{"sender_networks": []any{"nonsense"}}, "nonsense"},
		{"relay: rate without limit", "relay", map[string]any{"rate": map[string]any{"per": int64(60)}}, "rate wants"},
		{"relay: rate per 0", "relay", map[string]any{"rate": map[string]any{"limit": int64(5), "per": int64(0)}}, "rate wants"},
		{"aliases: SRS without a secret", "aliases", map[string]any{"srs_domain": "example.test"}, "srs_domain needs srs_secret"},
		{"lists: no members", "lists", map[string]any{"lists": map[string]any{"l@example.test": map[string]any{}}}, "has no members"},
		{"lists: bad posters", "lists", map[string]any{"lists": map[string]any{
			"l@example.test": map[string]any{"members": []any{"a@example.test"}, "posters": "everyone"},
		}}, "posters must be"},
		{"lists: moderated without an owner", "lists", map[string]any{"lists": map[string]any{
			"l@example.test": map[string]any{"members": []any{"a@example.test"}, "posters": "moderated"},
		}}, "moderated but has no owner"},
		{"lists: a member that is no address", "lists", map[string]any{"lists": map[string]any{
			"l@example.test": map[string]any{"members": []any{"alice"}},
		}}, "alice is not an address"},
		{"aliases: bad expn network", "aliases", map[string]any{"expn_networks": []any{"10.0.0.0/33"}}, "10.0.0.0/33"},
		{"translate: route without a match", "translate", map[string]any{"routes": []any{map[string]any{"via": "127.0.0.1:25"}}}, "routes[1] wants"},
		{"translate: route without a target", "translate", map[string]any{"routes": []any{map[string]any{"match": "*"}}}, "routes[1] wants"},
		{"lists: bad expn network", "lists", map[string]any{"expn_networks": []any{"::1/129"}}, "::1/129"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := loadScript(tt.script, tt.params)
			if err == nil {
				s.Close()
				t.Fatalf("Load succeeded, want an error with %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}
