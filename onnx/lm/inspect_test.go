package lm

import (
	"strings"
	"testing"
)

func TestInspectBuiltins(t *testing.T) {
	for name, c := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := WriteModelDir(c, dir, true); err != nil {
				t.Fatal(err)
			}
			info, err := Inspect(dir, CheckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			d := c.Defaults()
			if info.Params != c.Params() {
				t.Errorf("inspect counts %d parameters, the config %d", info.Params, c.Params())
			}
			if info.Layout == nil {
				t.Fatalf("not recognised as a causal LM: %s", info.LayoutError)
			}
			l := info.Layout
			if l.Layers != d.Layers || l.KVHeads != d.KVHeads || l.HeadDim != d.HeadDim || l.Vocab != d.Vocab ||
				info.Heads != d.Heads || info.DModel != d.DModel || info.IRVersion == 0 || info.Opsets[""] == 0 {
				t.Errorf("info %+v layout %+v, config %+v", info, l, d)
			}
			s := info.Summary()
			for _, want := range []string{"layers     2", "past_key_values.1.value", "present.0.key", "parameters", "model_type " + name} {
				if !strings.Contains(s, want) {
					t.Errorf("summary lacks %q:\n%s", want, s)
				}
			}
		})
	}
}
