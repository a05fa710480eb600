package train

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// RunSettings are the settings that decide a run's result, by name ("lr",
// "seed", "data_sha256"): a run folder records them when its run starts,
// and a run that resumes there must have the same ones, or it would mix two
// settings in one result. Operational settings (checkpoint interval,
// threads) do not belong here.
type RunSettings map[string]string

// SettingsFile is where a run folder records its RunSettings.
const SettingsFile = "run.json"

// Set records v under name: floats in their shortest exact form, slices
// comma-joined, anything else as fmt prints it. It returns s for chaining.
func (s RunSettings) Set(name string, v any) RunSettings {
	switch x := v.(type) {
	case float64:
		s[name] = strconv.FormatFloat(x, 'g', -1, 64)
	case float32:
		s[name] = strconv.FormatFloat(float64(x), 'g', -1, 32)
	case []string:
		s[name] = strings.Join(x, ",")
	default:
		s[name] = fmt.Sprint(v)
	}
	return s
}

// SettingsOf flattens a config struct into settings through its JSON form:
// nested objects become dotted names ("weights.alpha"); the named fields are
// left out.
func SettingsOf(v any, except ...string) (RunSettings, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("run settings: %w", err)
	}
	var tree map[string]any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("run settings of %T: not a JSON object: %w", v, err)
	}
	s := RunSettings{}
	var walk func(prefix string, x any)
	walk = func(prefix string, x any) {
		switch y := x.(type) {
		case map[string]any:
			for k, v := range y {
				walk(prefix+k+".", v)
			}
		case nil:
			s[strings.TrimSuffix(prefix, ".")] = ""
		default:
			if reflect.TypeOf(y).Kind() == reflect.Slice {
				b, _ := json.Marshal(y)
				s[strings.TrimSuffix(prefix, ".")] = string(b)
				return
			}
			s[strings.TrimSuffix(prefix, ".")] = fmt.Sprint(y)
		}
	}
	walk("", tree)
	for _, k := range except {
		delete(s, k)
	}
	return s, nil
}

// SettingDiff is one setting a resumed run changed.
type SettingDiff struct{ Name, Was, Now string }

// SettingsMismatchError refuses a resume with other settings than the run
// folder recorded; each changed setting is named with both values.
type SettingsMismatchError struct {
	File  string // the recorded settings
	Diffs []SettingDiff
}

func (e *SettingsMismatchError) Error() string {
	parts := make([]string, len(e.Diffs))
	for i, d := range e.Diffs {
		parts[i] = fmt.Sprintf("%s was %s, now %s", d.Name, orUnset(d.Was), orUnset(d.Now))
	}
	return fmt.Sprintf("cannot resume: the run in %s was started with other settings (%s; recorded in %s)",
		filepath.Dir(e.File), strings.Join(parts, "; "), e.File)
}

// orUnset quotes a recorded value (JSON text) once: a JSON string shows as
// its text in quotes, not quoted a second time.
func orUnset(v string) string {
	switch {
	case v == "":
		return "(unset)"
	case strings.HasPrefix(v, `"`):
		var s string
		if json.Unmarshal([]byte(v), &s) == nil {
			return strconv.Quote(s)
		}
	}
	return strconv.Quote(v)
}

// Record writes s to dir/run.json, replacing what was there (a fresh run).
func (s RunSettings) Record(dir string) error {
	js, err := json.MarshalIndent(map[string]any{"settings": s}, "", "  ")
	if err != nil {
		return fmt.Errorf("record run settings: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("record run settings: %w", err)
	}
	if err := renameio.WriteFile(filepath.Join(dir, SettingsFile), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("record run settings: %w", err)
	}
	return nil
}

// Check compares s with the settings recorded in dir and returns a
// *SettingsMismatchError listing every difference. A folder that recorded
// none (a run from before settings were recorded) gets s recorded.
func (s RunSettings) Check(dir string) error {
	p := filepath.Join(dir, SettingsFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return s.Record(dir)
	}
	if err != nil {
		return fmt.Errorf("check run settings: %w", err)
	}
	var file struct {
		Settings map[string]string `json:"settings"`
	}
	if err := json.Unmarshal(b, &file); err != nil || file.Settings == nil {
		return fmt.Errorf("check run settings: %s is not a run settings file (%v): delete it, or the run folder, to start over", p, err)
	}
	names := map[string]bool{}
	for k := range s {
		names[k] = true
	}
	for k := range file.Settings {
		names[k] = true
	}
	var diffs []SettingDiff
	for k := range names {
		if was, now := file.Settings[k], s[k]; was != now {
			diffs = append(diffs, SettingDiff{Name: k, Was: was, Now: now})
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	sort.Slice(diffs, func(i, j int) bool { return diffs[i].Name < diffs[j].Name })
	return &SettingsMismatchError{File: p, Diffs: diffs}
}

// CheckOrRecord is what a resumable run does on start: with a checkpoint in
// dir (LatestCheckpoint) it Checks s against the recorded settings; without
// one there is nothing to resume, and s is recorded.
func (s RunSettings) CheckOrRecord(dir string) error {
	if _, err := LatestCheckpoint(dir); errors.Is(err, ErrNoCheckpoint) {
		return s.Record(dir)
	}
	return s.Check(dir)
}

// ModelSHA256 is the hex sha256 of a model's deterministic serialization.
func ModelSHA256(m *onnxpb.ModelProto) (string, error) {
	h := sha256.New()
	if _, err := ir.MarshalTo(h, m); err != nil { // Marshal's bytes, never all in memory at once
		return "", fmt.Errorf("hash model: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// DataSHA256 hashes token rows (and optional per-row prompt lengths), for
// in-memory training data.
func DataSHA256(rows [][]int64, promptLen []int) string {
	h := sha256.New()
	var buf [8]byte
	put := func(x int64) {
		for i := range buf {
			buf[i] = byte(x >> (8 * i))
		}
		h.Write(buf[:])
	}
	for i, r := range rows {
		put(int64(len(r)))
		for _, id := range r {
			put(id)
		}
		if i < len(promptLen) {
			put(int64(promptLen[i]))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
