package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/google/renameio/v2"
)

// ConfigMap is c as nested maps keyed by the config's key names (what
// `tagpr config print` shows); RL stages stay a list.
func ConfigMap(c any) map[string]any {
	out, _ := configValue(reflect.ValueOf(c)).(map[string]any)
	return out
}

func configValue(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return configValue(v.Elem())
	case reflect.Struct:
		m := map[string]any{}
		addStructFields(v, m)
		return m
	case reflect.Slice:
		if v.IsNil() {
			return []any{}
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = configValue(v.Index(i))
		}
		return out
	}
	if d, ok := v.Interface().(time.Duration); ok {
		return d.String()
	}
	return v.Interface()
}

// addStructFields adds v's fields under their key names; squashed structs
// add theirs to m.
func addStructFields(v reflect.Value, m map[string]any) {
	for _, f := range configFields(v.Type()) {
		if f.squash {
			addStructFields(v.Field(f.index), m)
		} else {
			m[f.name] = configValue(v.Field(f.index))
		}
	}
}

// configField is a struct field under its config key name (the
// mapstructure tag); squash fields lend theirs to the parent.
type configField struct {
	index  int
	name   string
	squash bool
}

// configFields lists t's exported fields, leaving out those tagged "-".
func configFields(t reflect.Type) []configField {
	var out []configField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out = append(out, configField{index: i, name: name, squash: opts == "squash"})
	}
	return out
}

// ConfigKey is one settable leaf of the config and its Go type.
type ConfigKey struct {
	Key  string // e.g. "stages.sft.lr"
	Type reflect.Type
}

// ConfigKeys lists every leaf key of a config type that a single value can
// set (lists of structs, such as stages.rl, are left out), in field order.
func ConfigKeys(c any) []ConfigKey {
	var out []ConfigKey
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for _, f := range configFields(t) {
			ft := t.Field(f.index).Type
			if f.squash {
				walk(prefix, ft)
				continue
			}
			key := prefix + f.name
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch {
			case ft == reflect.TypeOf(time.Duration(0)):
				out = append(out, ConfigKey{key, ft})
			case ft.Kind() == reflect.Struct:
				walk(key+".", ft)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			default:
				out = append(out, ConfigKey{key, ft})
			}
		}
	}
	t := reflect.TypeOf(c)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	walk("", t)
	return out
}

// flatten turns nested config maps into dotted keys; the RL list is keyed
// by stage name (stages.rl.guided.beta), other lists are leaves.
func flatten(prefix string, v any, out map[string]any) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			flatten(prefix+k+".", val, out)
		}
		return
	case []any:
		if prefix == "stages.rl." {
			for _, st := range x {
				if m, ok := st.(map[string]any); ok {
					name, _ := m["name"].(string)
					flatten(prefix+name+".", m, out)
				}
			}
			return
		}
	}
	out[strings.TrimSuffix(prefix, ".")] = v
}

// stageStamp records the settings a stage's output was made with, so a
// rerun with other settings is refused instead of mixing two runs.
type stageStamp struct {
	Stage    string         `json:"stage"`
	Settings map[string]any `json:"settings"`
}

const stampFile = "stage.json"

// normalize makes settings compare as they read back from JSON.
func normalize(m map[string]any) (map[string]any, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	return out, json.Unmarshal(b, &out)
}

// checkStamp compares dir's stage.json with settings; a missing one is
// written (before the stage's work, so a resumed stage is checked too).
// done says the folder already holds the stage's finished output.
func checkStamp(dir, stage string, settings map[string]any, done bool) error {
	want, err := normalize(settings)
	if err != nil {
		return fmt.Errorf("stage %s: settings: %w", stage, err)
	}
	path := filepath.Join(dir, stampFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if done {
			return fmt.Errorf("stage %s: %s holds finished output but no %s (made by an older tagpr?): delete %s to redo the stage", stage, dir, stampFile, dir)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("stage %s: %w", stage, err)
		}
		b, err := json.MarshalIndent(stageStamp{Stage: stage, Settings: want}, "", "  ")
		if err != nil {
			return err
		}
		return renameio.WriteFile(path, append(b, '\n'), 0o644)
	}
	if err != nil {
		return fmt.Errorf("stage %s: %w", stage, err)
	}
	var have stageStamp
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&have); err != nil {
		return fmt.Errorf("stage %s: %s: %w (delete %s to redo the stage)", stage, path, err, dir)
	}
	if key, old, now, differ := firstDifference(have.Settings, want); differ {
		return fmt.Errorf("stage %s: %s was made with %s = %s, the config now says %s: delete %s (and the stages after it) to redo it with the new setting, or set another out",
			stage, dir, key, show(old), show(now), dir)
	}
	return nil
}

// firstDifference finds the first key (in sorted order) whose value differs.
func firstDifference(a, b map[string]any) (key string, old, now any, differ bool) {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		va, oka := a[k]
		vb, okb := b[k]
		if oka != okb || !reflect.DeepEqual(va, vb) {
			if !oka {
				va = "(unset)"
			}
			if !okb {
				vb = "(unset)"
			}
			return k, va, vb, true
		}
	}
	return "", nil, nil, false
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
