package pipeline

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tagpr/tagpr/onnx/train"
)

// TestStampRevisionOfRTag: the stages that score with R_tag (chains, SFT
// through them, RL) stamp R_tag's revision, which no config key names. A
// run folder of a tagpr from before it was stamped (tagpr 274c418 and
// older; builds before 2026-12-07's R_tag changes scored it otherwise)
// goes on with a note naming the folder, the revision and how to redo it;
// a stage recorded under another revision is refused, naming it, as a
// changed setting is; the report names such stages. Before, a stage an older tagpr began resumed
// silently with steps scored by two R_tags in one stage.
func TestStampRevisionOfRTag(t *testing.T) {
	const rTagKey = "revision.r_tag"
	mustORT(t)
	cfg := tinyRun(t.TempDir())
	ctx := context.Background()
	if _, err := Run(ctx, cfg, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	guided := filepath.Join(cfg.Out, "rl", "guided")
	edit := func(dir string, f func(map[string]string)) {
		t.Helper()
		p := filepath.Join(dir, train.SettingsFile)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var file struct {
			Settings map[string]string `json:"settings"`
		}
		if err := json.Unmarshal(b, &file); err != nil {
			t.Fatal(err)
		}
		f(file.Settings)
		if err := train.RunSettings(file.Settings).Record(dir); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{filepath.Join(cfg.Out, "chains"), filepath.Join(cfg.Out, "sft"), guided} {
		edit(d, func(s map[string]string) {
			if s[rTagKey] != "2" {
				t.Errorf("%s records %s %q; want \"2\"", d, rTagKey, s[rTagKey])
			}
			delete(s, rTagKey) // as an older tagpr recorded it
		})
	}
	// The guided stage not finished: an older tagpr's interrupted stage.
	if err := os.Remove(filepath.Join(guided, "model.onnx")); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var notes []string
	_, err := Run(ctx, cfg, RunOptions{Only: []string{StageRL + ":guided"}, Progress: func(p train.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Note != "" {
			notes = append(notes, p.Note)
		}
	}})
	if err != nil {
		t.Fatalf("resume of a stage an older tagpr recorded: %v", err)
	}
	all := strings.Join(notes, "\n")
	for _, want := range []string{
		guided + " was recorded by a tagpr that did not stamp " + rTagKey,
		"this run makes the rest under this tagpr's: delete " + guided,
		filepath.Join(cfg.Out, "chains") + " was recorded by a tagpr that did not stamp",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("notes %q; want one saying %q", notes, want)
		}
	}
	if n := strings.Count(all, guided+" was recorded by"); n != 1 {
		t.Errorf("the older stamp of %s noted %d times; want once", guided, n)
	}
	// The report says which stages such a tagpr may have made.
	if _, err := Run(ctx, cfg, RunOptions{Only: []string{StageReport}}); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(cfg.Out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "stages made or begun by a tagpr that did not stamp " + rTagKey + ": chains, sft, rl/guided ("; !strings.Contains(string(md), want) {
		t.Errorf("report.md does not say %q", want)
	}
	// Another revision is refused, naming it and the folder to delete.
	edit(guided, func(s map[string]string) { s[rTagKey] = "1" })
	_, err = Run(ctx, cfg, RunOptions{Only: []string{StageRL + ":guided"}})
	if err == nil || !strings.Contains(err.Error(), rTagKey+` was "1", now "2"`) ||
		!strings.Contains(err.Error(), "made by a tagpr whose "+rTagKey+" differs") || !strings.Contains(err.Error(), "delete "+guided) {
		t.Fatalf("a stage of another R_tag revision: %v", err)
	}
}

// TestStampRevisionOfLlama32Date: a policy whose chats are Llama 3.2's
// (declared by its tokenizer_config.json, or named) stamps the date
// revision: tagpr 274c418 rendered them with the day's date, this one with
// the template's 26 Jul 2024, so an older stage (a predict stage begun with
// dated prompts resumed undated) gets a note naming the folder, and a
// ChatML policy's stamps stay as they were. Before, nothing told them apart.
func TestStampRevisionOfLlama32Date(t *testing.T) {
	const key = "revision.llama32_date"
	fx := struct{ Templates map[string]string }{chatTemplates(t)}
	dir := t.TempDir()
	if err := bosTokenizer(t).Save(filepath.Join(dir, "tokenizer.json")); err != nil {
		t.Fatal(err)
	}
	setTemplate := func(tpl string) {
		b, _ := json.Marshal(map[string]string{"chat_template": tpl})
		if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := func(name string) *runEnv {
		return &runEnv{cfg: RunConfig{Out: t.TempDir(), Tokenizer: TokenizerConfig{Path: filepath.Join(dir, "tokenizer.json"), ChatTemplate: name}}}
	}
	setTemplate(fx.Templates["llama3.2"])
	for _, name := range []string{"auto", "llama3.2"} {
		if v := env(name).policySettings()[key]; v != 2 {
			t.Errorf("chat_template %s over Llama 3.2's template: %s = %v; want 2", name, key, v)
		}
	}
	if v, ok := env("chatml").policySettings()[key]; ok {
		t.Errorf("chat_template chatml: %s = %v; want none", key, v)
	}
	setTemplate(fx.Templates["llama3.1"])
	if v, ok := env("auto").policySettings()[key]; ok {
		t.Errorf("Llama 3.1's template: %s = %v; want none (its date was always fixed)", key, v)
	}

	// A predictions folder an older tagpr stamped without it.
	setTemplate(fx.Templates["llama3.2"])
	var notes []string
	r := env("auto")
	r.h = func(p train.Progress) {
		if p.Note != "" {
			notes = append(notes, p.Note)
		}
	}
	pred := filepath.Join(r.cfg.Out, "predictions", "sft")
	old := r.policySettings()
	delete(old, key)
	if err := checkStamp(pred, "predict sft", old, false); err != nil {
		t.Fatal(err)
	}
	if err := r.checkStamp(pred, "predict sft", r.policySettings(), false); err != nil {
		t.Fatalf("an older tagpr's stamp: %v", err)
	}
	if want := pred + " was recorded by a tagpr that did not stamp " + key + " (tagpr 274c418 and older rendered Llama 3.2 chats with the day's date"; len(notes) != 1 || !strings.HasPrefix(notes[0], want) {
		t.Errorf("notes %q; want one starting %q", notes, want)
	}
}
