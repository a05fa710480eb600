package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/tokenize"
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

// revisions number what a stage computes where no setting of the config
// says it. When a change to tagpr makes the same settings give other
// results, its number goes up: a stage recorded under another number is
// refused as a changed setting is, instead of resuming with steps of both
// (an RL stage scoring its first steps with one R_tag and the rest with
// another). Stamps of a tagpr from before revisions were recorded have
// none: such a stage goes on with a note saying what may differ
// (checkStampOf's older).
//
// revision.r_tag 2: R_tag's constraints of 2026-12-07 (a step tag outside
// <think> breaks well-formedness, a text without steps meets no required
// tag, required tags without an order are in order); tagpr 274c418 has them.
// It goes into the stamps of the stages that score with R_tag: the chains
// filter (hence SFT and what builds on it) and the RL stages.
//
// revision.llama32_date 2: Llama 3.2 chats rendered with the template's
// fallback date (26 Jul 2024), not the day's (after 274c418). It goes into
// the policy's stamps (hence SFT, RL and predictions) when the policy's chat
// format is Llama 3.2's, the only one it changed.
var revisions = map[string]any{revisionRTag: 2, revisionLlama32Date: 2}

const (
	revisionRTag        = "revision.r_tag"
	revisionLlama32Date = "revision.llama32_date"
)

// withRevision adds the revision named key to a stage's settings.
func withRevision(s map[string]any, key string) map[string]any {
	s[key] = revisions[key]
	return s
}

// checkStamp keeps a stage folder's record of the settings its output
// depends on (train.RunSettings in dir/run.json, values in JSON form): a
// missing one is written before the stage's work, so a resumed stage is
// checked too; a differing one is refused, naming each setting and both
// values. done says the folder already holds the stage's finished output
// (then a missing record means something else made it).
func checkStamp(dir, stage string, settings map[string]any, done bool) error {
	_, err := checkStampOf(dir, stage, settings, done)
	return err
}

// checkStampOf is checkStamp; older lists the revisions (revisions' keys)
// the settings hold and dir's record lacks: a tagpr from before they were
// recorded made it, and what they number may have been otherwise then.
// They are left out of the comparison and the record is left as it is.
func checkStampOf(dir, stage string, settings map[string]any, done bool) (older []string, err error) {
	s := train.RunSettings{}
	for k, v := range settings {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("stage %s: setting %s: %w", stage, k, err)
		}
		s[k] = string(b)
	}
	p := filepath.Join(dir, train.SettingsFile)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		if done {
			return nil, fmt.Errorf("stage %s: %s holds finished output but no %s (made by an older tagpr?): delete %s to redo the stage", stage, dir, train.SettingsFile, dir)
		}
		return nil, s.Record(dir)
	}
	if recorded, err := recordedSettings(p); err == nil {
		for k := range revisions {
			if _, ok := s[k]; ok {
				if _, had := recorded[k]; !had {
					older = append(older, k)
					delete(s, k)
				}
			}
		}
		sort.Strings(older)
	}
	// A stamp of an older tagpr has no input hashes: checked without them.
	if b, err := os.ReadFile(filepath.Join(dir, train.SettingsFile)); err == nil {
		var rec struct {
			Settings map[string]string `json:"settings"`
		}
		if json.Unmarshal(b, &rec) == nil && rec.Settings != nil {
			for _, k := range hashKeys {
				if _, ok := rec.Settings[k]; !ok {
					delete(s, k)
				}
			}
		}
	}
	if err := s.Check(dir); err != nil {
		var mm *train.SettingsMismatchError
		if errors.As(err, &mm) {
			for _, d := range mm.Diffs {
				if _, rev := revisions[d.Name]; rev {
					return nil, fmt.Errorf("stage %s: %w: its output was made by a tagpr whose %s differs from this one's (not a setting of the config): delete %s (and the stages after it) to redo it with this tagpr", stage, err, d.Name, dir)
				}
			}
		}
		return nil, fmt.Errorf("stage %s: %w: delete %s (and the stages after it) to redo it with these settings, or set another out", stage, err, dir)
	}
	return older, nil
}

// recordedSettings reads a run.json's settings (nil and an error when it is
// not one: train.RunSettings.Check names that).
func recordedSettings(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var file struct {
		Settings map[string]string `json:"settings"`
	}
	if err := json.Unmarshal(b, &file); err != nil || file.Settings == nil {
		return nil, fmt.Errorf("%s: not a run settings file", path)
	}
	return file.Settings, nil
}

// olderRevisionNote says what a revision a stamp lacks may have changed.
var olderRevisionNote = map[string]string{
	revisionRTag:        "tagpr builds older than 274c418 (2026-12-07) scored R_tag otherwise (docs/rewards.md: step tags outside <think>, texts without steps, required tags without an order)",
	revisionLlama32Date: "tagpr 274c418 and older rendered Llama 3.2 chats with the day's date, this tagpr with the template's 26 Jul 2024, so the prompts differ",
}

// checkStamp is checkStamp for a run's stage folders; a folder recorded by
// a tagpr from before a revision was stamped gets a note, once per run,
// saying what may differ and how to redo it.
func (r *runEnv) checkStamp(dir, stage string, settings map[string]any, done bool) error {
	older, err := checkStampOf(dir, stage, settings, done)
	if err != nil || len(older) == 0 || r.olderNoted[dir] {
		return err
	}
	if r.olderNoted == nil {
		r.olderNoted = map[string]bool{}
	}
	r.olderNoted[dir] = true
	var why []string
	for _, k := range older {
		why = append(why, olderRevisionNote[k])
	}
	what := "made it, delete %[2]s (and the stages after it) and rerun to redo it with this tagpr"
	if !done {
		what = "made its first steps, this run makes the rest under this tagpr's: delete %[2]s (and the stages after it) and rerun to redo the whole stage with this tagpr"
	}
	note(r.h, stage, "%[1]s was recorded by a tagpr that did not stamp %[3]s (%[4]s); if such a build "+what,
		dir, dir, strings.Join(older, ", "), strings.Join(why, "; "))
	return nil
}

// olderStampsNote names the stage folders (chains, SFT, RL stages) whose
// stamps lack a revision their settings now hold, as the run's notes did
// when it went on with them: a report of such a run says that a tagpr from
// before the revision may have made them (or, resumed, part of them).
func (r *runEnv) olderStampsNote() string {
	policy := []string{revisionRTag}
	if r.llama32Chat() {
		policy = append(policy, revisionLlama32Date)
	}
	type stage struct {
		dir  string
		keys []string // the revisions its stamp holds now
	}
	stages := []stage{{r.dir("chains"), []string{revisionRTag}}, {r.dir("sft"), policy}}
	for _, st := range r.cfg.Stages.RL {
		stages = append(stages, stage{r.dir("rl", st.Name), policy})
	}
	var older []string
	lacks := map[string]bool{}
	for _, st := range stages {
		d, keys := st.dir, st.keys
		rec, err := recordedSettings(filepath.Join(d, train.SettingsFile))
		if err != nil {
			continue
		}
		missing := false
		for _, k := range keys {
			if _, ok := rec[k]; !ok {
				missing, lacks[k] = true, true
			}
		}
		if missing {
			rel, _ := filepath.Rel(r.cfg.Out, d)
			older = append(older, filepath.ToSlash(rel))
		}
	}
	if len(older) == 0 {
		return ""
	}
	var keys, why []string
	for k := range lacks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		why = append(why, olderRevisionNote[k])
	}
	return fmt.Sprintf("stages made or begun by a tagpr that did not stamp %s: %s (%s); if such a build made them, this run may mix what it computed with what this tagpr computes: delete those folders (and the stages after them) and rerun",
		strings.Join(keys, ", "), strings.Join(older, ", "), strings.Join(why, "; "))
}

// llama32Chat says whether the policy renders its chats in Llama 3.2's
// format (named by tokenizer.chat_template, or declared by the policy's
// tokenizer_config.json under auto), the one whose date revision
// llama32_date numbers. The tokenizer is read once per run.
func (r *runEnv) llama32Chat() bool {
	if r.chatLlama32 == nil {
		v := false
		switch name := r.cfg.Tokenizer.ChatTemplate; {
		case name == "llama3.2":
			v = true
		case name == "" || name == "auto":
			if tp := r.tokenizerPath(); tp != "" {
				if tok, err := tokenize.Load(tp); err == nil {
					v = tok.ChatFormat().Name == "llama3.2"
				}
			}
		}
		r.chatLlama32 = &v
	}
	return *r.chatLlama32
}
