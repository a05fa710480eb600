package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/tagpr/tagpr/onnx/train"
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

// ConfigSubkeys lists the keys the config section at path has (path as
// the decoder names it: "" is the top level, "stages.rl[0]" an RL stage),
// for an unknown key's nearest spelling; nil when path is no section.
func ConfigSubkeys(c any, path string) []string {
	t := reflect.TypeOf(c)
	deref := func(t reflect.Type) reflect.Type {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		return t
	}
	t = deref(t)
	for _, part := range strings.Split(path, ".") {
		if part == "" {
			continue
		}
		if i := strings.IndexByte(part, '['); i >= 0 {
			part = part[:i]
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
		ft, ok := configFieldType(t, part)
		if !ok {
			return nil
		}
		t = deref(ft)
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for _, f := range configFields(t) {
			if f.squash {
				add(t.Field(f.index).Type)
			} else {
				names = append(names, f.name)
			}
		}
	}
	add(t)
	return names
}

// configFieldType is the type of t's field keyed name (squashed structs'
// fields included).
func configFieldType(t reflect.Type, name string) (reflect.Type, bool) {
	for _, f := range configFields(t) {
		ft := t.Field(f.index).Type
		if f.squash {
			if st, ok := configFieldType(ft, name); ok {
				return st, true
			}
		} else if strings.EqualFold(f.name, name) {
			return ft, true
		}
	}
	return nil, false
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

// checkStamp keeps a stage folder's record of the settings its output
// depends on (train.RunSettings in dir/run.json, values in JSON form): a
// missing one is written before the stage's work, so a resumed stage is
// checked too; a differing one is refused, naming each setting and both
// values. done says the folder already holds the stage's finished output
// (then a missing record means something else made it).
func checkStamp(dir, stage string, settings map[string]any, done bool) error {
	s := train.RunSettings{}
	for k, v := range settings {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("stage %s: setting %s: %w", stage, k, err)
		}
		s[k] = string(b)
	}
	if _, err := os.Stat(filepath.Join(dir, train.SettingsFile)); errors.Is(err, os.ErrNotExist) {
		if done {
			return fmt.Errorf("stage %s: %s holds finished output but no %s (made by an older tagpr?): delete %s to redo the stage", stage, dir, train.SettingsFile, dir)
		}
		return s.Record(dir)
	}
	if err := s.Check(dir); err != nil {
		return fmt.Errorf("stage %s: %w: delete %s (and the stages after it) to redo it with these settings, or set another out", stage, err, dir)
	}
	return nil
}
