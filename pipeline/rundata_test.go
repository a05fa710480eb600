package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/train"
)

// lampDownload is the LaMP fixture in LaMP's download layout (LaMP_2 is
// movie tagging; tasks 2, 3, 4).
const lampDownload = "../datasets/testdata/lamp_download"

// copyTree copies the files below src into dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		return copyTestFile(p, filepath.Join(dst, rel))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func copyTestFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// newsFolder writes LaMP_2N (news categorization) in the download layout
// into dir, its train and dev splits from the news fixture's dev files.
func newsFolder(t *testing.T, dir string) {
	t.Helper()
	src := "../datasets/testdata/lamp/user/LaMP_2N"
	for _, split := range []string{"train", "dev"} {
		for _, kind := range []string{"questions", "outputs"} {
			if err := copyTestFile(filepath.Join(src, "dev_"+kind+".json"), filepath.Join(dir, split, split+"_"+kind+".json")); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// lampRun is a run of lamp's tasks, opened as `tagpr run` opens one.
func lampRun(t *testing.T, lamp, out string, tasks ...TaskRef) (*runEnv, *[]string, error) {
	t.Helper()
	cfg := tinyRun(out)
	cfg.Data = DataConfig{LaMPDir: lamp, Tasks: tasks, Scheme: "user"}
	cfg.Teacher = DefaultRunConfig().Teacher
	cfg.Teacher.BaseURL, cfg.Teacher.Model = "http://localhost:1/v1", "m"
	var mu sync.Mutex
	var notes []string
	r, err := openRun(cfg, func(p train.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Note != "" {
			notes = append(notes, p.Note)
		}
	})
	if err == nil {
		t.Cleanup(r.close)
	}
	return r, &notes, err
}

// TestLaMPTaskFolderPrefersItsOwnName: with LaMP_2 (movies) and LaMP_2N
// (news) side by side, task 2N reads LaMP_2N and task 2 reads LaMP_2; a
// task's own name (LaMP_2M) comes before LaMP_2, and 2N falls back to
// LaMP_2 when it has no folder of its own.
func TestLaMPTaskFolderPrefersItsOwnName(t *testing.T) {
	lamp := t.TempDir()
	copyTree(t, filepath.Join(lampDownload, "LaMP_2"), filepath.Join(lamp, "LaMP_2"))
	newsFolder(t, filepath.Join(lamp, "LaMP_2N"))
	r, _, err := lampRun(t, lamp, t.TempDir(), "2", "2N")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"LaMP_2", "LaMP_2N"} {
		if got := filepath.Base(filepath.Dir(filepath.Dir(r.sources[i].questions["train"]))); got != want {
			t.Errorf("task %s reads %s, want %s", r.sources[i].task.Name, got, want)
		}
	}
	if err := r.prepareData(context.Background()); err != nil {
		t.Fatalf("data stage on LaMP_2 and LaMP_2N: %v", err)
	}
	if n := len(r.data.Tasks); n != 2 || r.data.Tasks[1].Task.Name != "LaMP_2N" || len(r.data.Tasks[1].Splits["train"]) == 0 {
		t.Fatalf("tasks %+v", r.data.Tasks)
	}

	// LaMP_2M (tagpr's name) beats LaMP_2; LaMP_2 serves 2N when alone.
	both := t.TempDir()
	copyTree(t, filepath.Join(lampDownload, "LaMP_2"), filepath.Join(both, "LaMP_2M"))
	newsFolder(t, filepath.Join(both, "LaMP_2"))
	r, _, err = lampRun(t, both, t.TempDir(), "2M", "2N")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"LaMP_2M", "LaMP_2"} {
		if got := filepath.Base(filepath.Dir(filepath.Dir(r.sources[i].questions["train"]))); got != want {
			t.Errorf("task %s reads %s, want %s", r.sources[i].task.Name, got, want)
		}
	}
}

// TestDataStageLeavesNothingWhenItFails: a source file that does not
// parse leaves no data folder (nor its side folder), so the corrected
// config runs instead of being refused as a changed one.
func TestDataStageLeavesNothingWhenItFails(t *testing.T) {
	lamp, out := t.TempDir(), t.TempDir()
	copyTree(t, filepath.Join(lampDownload, "LaMP_2"), filepath.Join(lamp, "LaMP_2"))
	copyTree(t, filepath.Join(lampDownload, "LaMP_3"), filepath.Join(lamp, "LaMP_3"))
	// Task 2N on movie-tagging files: the profile has no category.
	r, _, err := lampRun(t, lamp, out, "3", "2N")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.prepareData(context.Background()); err == nil || !strings.Contains(err.Error(), "category") {
		t.Fatalf("task 2N on movie files: %v; want the missing category named", err)
	}
	for _, p := range []string{"data", "data.tmp"} {
		if _, err := os.Stat(filepath.Join(out, p)); err == nil {
			t.Errorf("a failed data stage left %s", p)
		}
	}
	r, _, err = lampRun(t, lamp, out, "3", "2")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.checkStamps(); err != nil {
		t.Fatalf("the corrected config after a failed data stage: %v", err)
	}
	if err := r.prepareData(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "data", "done.json")); err != nil {
		t.Fatal(err)
	}

	// An unfinished data folder (an older tagpr's, stamped with other
	// settings) is rebuilt, not refused.
	stale := t.TempDir()
	if err := checkStamp(filepath.Join(stale, "data"), "data", map[string]any{"data.tasks": []string{"LaMP_2N"}}, false); err != nil {
		t.Fatal(err)
	}
	r, _, err = lampRun(t, lamp, stale, "3")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.checkStamps(); err != nil {
		t.Fatalf("an unfinished data folder: %v", err)
	}
	if err := r.prepareData(context.Background()); err != nil || len(r.data.Tasks) != 1 {
		t.Fatalf("rebuilding an unfinished data folder: %v", err)
	}
}

// TestLaMPLayoutErrors: lamp_dir set to one task's folder, and split files
// not in their split subfolders, are refused saying what to change.
func TestLaMPLayoutErrors(t *testing.T) {
	root := t.TempDir()
	deep := filepath.Join(root, "LaMP", "LaMP_2")
	copyTree(t, filepath.Join(lampDownload, "LaMP_2"), deep)
	_, _, err := lampRun(t, deep, t.TempDir(), "2")
	if err == nil || !strings.Contains(err.Error(), "set data.lamp_dir to its parent, "+filepath.Join(root, "LaMP")) {
		t.Errorf("lamp_dir one folder too deep: %v", err)
	}

	flat := t.TempDir()
	for _, split := range []string{"train", "dev"} {
		for _, kind := range []string{"questions", "outputs"} {
			name := split + "_" + kind + ".json"
			if err := copyTestFile(filepath.Join(lampDownload, "LaMP_2", split, name), filepath.Join(flat, "LaMP_2", name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, _, err = lampRun(t, flat, t.TempDir(), "2")
	for _, want := range []string{filepath.Join(flat, "LaMP_2"), "move them into train/ and dev/ subfolders", "train/train_questions.json", "dev/dev_outputs.json"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("split files directly in LaMP_2: %v; want %q", err, want)
		}
	}

	_, _, err = lampRun(t, filepath.Join(root, "LaMP"), t.TempDir(), "3")
	if err == nil || !strings.Contains(err.Error(), "no folder LaMP_3") {
		t.Errorf("no folder for the task: %v", err)
	}
}

// TestPredictNotesASkippedSplit: a listed split the data lacks is skipped
// with a note naming the missing file.
func TestPredictNotesASkippedSplit(t *testing.T) {
	lamp := t.TempDir()
	for _, split := range []string{"train", "dev"} { // no test/
		copyTree(t, filepath.Join(lampDownload, "LaMP_3", split), filepath.Join(lamp, "LaMP_3", split))
	}
	r, notes, err := lampRun(t, lamp, t.TempDir(), "3")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.prepareData(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.cfg.Stages.Predict.Models, r.cfg.Stages.Predict.Splits = []string{ModelBase}, []string{"test"}
	if err := r.predict(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "LaMP_3: the test split is skipped (stages.predict.splits lists it, but no " + filepath.Join(lamp, "LaMP_3", "test", "test_questions.json") + ")"
	if !strings.Contains(strings.Join(*notes, "\n"), want) {
		t.Fatalf("notes %q; want %q", *notes, want)
	}
}

// TestSFTSaysNoChainPassedTheFilter: when the filter keeps no chain, SFT
// says so, with how many were judged, where the verdicts are and which
// settings decide (not "no kept chain fits seq_len").
func TestSFTSaysNoChainPassedTheFilter(t *testing.T) {
	cfg := tinyRun(t.TempDir())
	cfg.Stages.Chains.Filter.MaxChars = 1 // no chain is that short
	r, err := openRun(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	ctx := context.Background()
	if err := r.prepareData(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.chains(ctx); err != nil {
		t.Fatal(err)
	}
	judged := 0
	for _, td := range r.data.Tasks {
		judged += len(td.Splits["train"])
	}
	err = r.sft(ctx)
	if err == nil {
		t.Fatal("SFT ran without a kept chain")
	}
	for _, want := range []string{"no chain passed the chains filter", "0 of the " + strconv.Itoa(judged) + " chains judged were kept",
		r.chainsFile(r.data.Tasks[0].Task.Name), "stages.chains.filter", "max_chars"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "fits seq_len") {
		t.Errorf("error %q blames seq_len", err)
	}
}

// TestREADMENamesThePredictionFiles: the README's path of a prediction
// file is the one predict writes.
func TestREADMENamesThePredictionFiles(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	r := &runEnv{cfg: RunConfig{Out: "out/lamp"}}
	want := filepath.ToSlash(filepath.Join(r.predictDir("rl:guided"), "LaMP_2M_dev.json"))
	text := strings.Join(strings.Fields(string(readme)), " ")
	if !strings.Contains(text, "`"+want+"`") {
		t.Errorf("README does not name %s", want)
	}
	if strings.Contains(text, "LaMP_N_SPLIT") {
		t.Error("README names prediction files LaMP_N_SPLIT.json: they are TASK_SPLIT.json, tagpr's task name (LaMP_2M)")
	}
}

// A sharded predict's recorded settings hold the model's files and the
// questions by content: a folder replaced under the same path (another
// model) gives other settings, so its worker is refused.
func TestPredictSettingsHashTheModel(t *testing.T) {
	src := filepath.Join("..", "onnx", "testdata", "pytorch", "qwen2-chat")
	model := filepath.Join(t.TempDir(), "m")
	if err := os.CopyFS(model, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	questions := filepath.Join(t.TempDir(), "q.json")
	os.WriteFile(questions, []byte(`[]`), 0o644)
	task, _ := datasets.ParseTask("3")
	o := PredictFileOptions{Model: model, Task: task, Questions: questions, Out: "p.json"}
	before, err := predictFileSettings(o)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := os.ReadFile(filepath.Join(model, "config.json"))
	os.WriteFile(filepath.Join(model, "config.json"), append(cfg, ' '), 0o644)
	after, err := predictFileSettings(o)
	if err != nil {
		t.Fatal(err)
	}
	if before["sha256.model.onnx"] == nil || before["sha256.config.json"] == after["sha256.config.json"] || before["sha256.q.json"] == nil {
		t.Fatalf("settings do not follow the files' content: before %v, after %v", before, after)
	}
	// The chat template renders every prompt: another one is other settings.
	for _, f := range []string{"tokenizer_config.json", "chat_template.jinja"} {
		b, _ := os.ReadFile(filepath.Join(model, f))
		os.WriteFile(filepath.Join(model, f), append(b, ' '), 0o644)
		again, err := predictFileSettings(o)
		if err != nil {
			t.Fatal(err)
		}
		if again["sha256."+f] == nil || again["sha256."+f] == after["sha256."+f] {
			t.Errorf("settings do not follow %s: before %v, after %v", f, after["sha256."+f], again["sha256."+f])
		}
		after = again
	}
	o.Half = true
	if h, _ := predictFileSettings(o); h["generation_dtype"] != "float16" {
		t.Fatalf("float16 generation not recorded: %v", h["generation_dtype"])
	}
}

// The policy stages' stamp covers every file the tokenizer is read from: a
// chat_template.jinja (which renders the SFT chats and the prompts) changed
// under a run makes its stages stale.
func TestPolicySettingsCoverTheChatTemplate(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} {
		os.WriteFile(filepath.Join(dir, f), []byte("{}"), 0o644)
	}
	r := &runEnv{cfg: RunConfig{Tokenizer: TokenizerConfig{Path: filepath.Join(dir, "tokenizer.json")}}}
	before := fmt.Sprint(r.policySettings()["tokenizer.files"])
	os.WriteFile(filepath.Join(dir, "chat_template.jinja"), []byte("{% for m in messages %}{{ m.content }}{% endfor %}"), 0o644)
	if after := fmt.Sprint(r.policySettings()["tokenizer.files"]); after == before {
		t.Errorf("tokenizer.files %s does not follow chat_template.jinja", after)
	}
}

// TestStampsHoldTheRunSeed: a stage whose seed is derived from the run's
// (its own left at 0) is refused on resume after the run's seed changed,
// naming it; a stage with its own seed is not.
func TestStampsHoldTheRunSeed(t *testing.T) {
	open := func(out string, seed uint64, own bool) *runEnv {
		t.Helper()
		cfg := tinyRun(out)
		cfg.Seed = seed
		if !own {
			cfg.Stages.SFT.Seed, cfg.Stages.PRMU.Seed = 0, 0
			for i := range cfg.Stages.RL {
				cfg.Stages.RL[i].Seed = 0
			}
		}
		r, err := openRun(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.close)
		return r
	}
	for _, own := range []bool{false, true} {
		out := t.TempDir()
		for _, seed := range []uint64{1, 2} {
			r := open(out, seed, own)
			stamps := map[string]map[string]any{"sft": r.sftSettings(), "prmu": r.prmuSettings(), "rl/exploratory": r.rlSettings("exploratory")}
			for dir, s := range stamps {
				err := checkStamp(filepath.Join(out, dir), dir, s, false)
				switch {
				case seed == 1 || own:
					if err != nil {
						t.Errorf("own seeds %v, run seed %d, %s: %v", own, seed, dir, err)
					}
				case err == nil || !strings.Contains(err.Error(), "seed was (unset), now \"2\""):
					t.Errorf("%s, derived seed, run seed 1 → 2: %v; want the changed seed refused", dir, err)
				}
			}
		}
	}
}

// TestReportAloneNeedsEval: `tagpr report` on a run whose predictions or
// eval are not done is refused naming the missing stage, not written as a
// report with no results (naming a final model that does not exist).
func TestReportAloneNeedsEval(t *testing.T) {
	out := t.TempDir()
	cfg := tinyRun(out)
	_, err := Run(context.Background(), cfg, RunOptions{Only: []string{StageReport}})
	if err == nil || !strings.Contains(err.Error(), "run `tagpr predict`") {
		t.Fatalf("report before predict: %v; want the predict stage named", err)
	}
	for _, m := range []string{"base", "sft", "rl"} {
		if err := writeJSON(filepath.Join(out, "predictions", m, "done.json"), map[string]any{}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = Run(context.Background(), cfg, RunOptions{Only: []string{StageReport}})
	if err == nil || !strings.Contains(err.Error(), "run `tagpr eval`") || !strings.Contains(err.Error(), filepath.Join(out, "eval")) {
		t.Fatalf("report before eval: %v; want the eval stage and its file named", err)
	}
	for _, f := range []string{"report.md", "metrics.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err == nil {
			t.Errorf("a refused report wrote %s", f)
		}
	}
}

// TestRunStopsWhenInterrupted: a run whose context is cancelled (Ctrl-C)
// starts no further stage, even where the stage running does not check it:
// here, cancelled before it starts, it builds nothing.
func TestRunStopsWhenInterrupted(t *testing.T) {
	out := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, tinyRun(out), RunOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("an interrupted run: %v; want context.Canceled", err)
	}
	for _, d := range []string{"data", "tokenizer", "base", "chains"} {
		if _, err := os.Stat(filepath.Join(out, d)); err == nil {
			t.Errorf("an interrupted run went on to make %s", d)
		}
	}
}

// TestRLStampHoldsGenerationDType: RL rollouts in float16 change the stage,
// so a finished RL stage made with float32 rollouts is not reused once
// runtime.generation_dtype says float16 (predictions were already stamped).
func TestRLStampHoldsGenerationDType(t *testing.T) {
	out := t.TempDir()
	cfg := tinyRun(out)
	r, err := openRun(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	dir := filepath.Join(out, "rl", "guided")
	if err := checkStamp(dir, "rl:guided", r.rlSettings("guided"), false); err != nil {
		t.Fatal(err)
	}
	cfg.Runtime.GenerationDType = "float16"
	h, err := openRun(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	if err := checkStamp(dir, "rl:guided", h.rlSettings("guided"), true); err == nil || !strings.Contains(err.Error(), "runtime.generation_dtype") {
		t.Fatalf("an RL stage made with float32 rollouts, resumed with float16: %v; want runtime.generation_dtype named", err)
	}
}

// A LaMP gold that evaluation would refuse (a LaMP-3 rating "seven") is
// refused when the run reads the data, naming the file, not after chains,
// SFT, PRMU and RL trained on it.
func TestBuildDataRefusesBadGolds(t *testing.T) {
	lamp := filepath.Join(t.TempDir(), "lamp")
	if err := os.CopyFS(filepath.Join(lamp, "LaMP_3"), os.DirFS(filepath.Join("..", "datasets", "testdata", "lamp_download", "LaMP_3"))); err != nil {
		t.Fatal(err)
	}
	golds := filepath.Join(lamp, "LaMP_3", "dev", "dev_outputs.json")
	b, _ := os.ReadFile(golds)
	os.WriteFile(golds, []byte(strings.Replace(string(b), `"output": "1"`, `"output": "seven"`, 1)), 0o644)
	d := DataConfig{LaMPDir: lamp, Tasks: []TaskRef{"3"}, Scheme: "user"}
	sources, err := dataSources(d)
	if err != nil {
		t.Fatal(err)
	}
	err = buildData(context.Background(), d, sources, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `gold "seven"`) || !strings.Contains(err.Error(), golds) {
		t.Fatalf("want the bad gold refused naming %s: %v", golds, err)
	}
}

// With data.max_examples the data stage reads only the first questions of a
// LaMP file, not the whole file (hundreds of MB to GB for LaMP-4/5 train,
// all decoded into memory before: 3.9 GB RSS for 300 of 1,400 questions of
// a 961 MB file). The file here is cut short after its third question: read
// to the end, it would be refused as truncated.
func TestBuildDataReadsOnlyMaxExamples(t *testing.T) {
	lamp := filepath.Join(t.TempDir(), "lamp")
	if err := os.CopyFS(filepath.Join(lamp, "LaMP_4"), os.DirFS(filepath.Join("..", "datasets", "testdata", "lamp_download", "LaMP_4"))); err != nil {
		t.Fatal(err)
	}
	q := filepath.Join(lamp, "LaMP_4", "train", "train_questions.json")
	b, err := os.ReadFile(q)
	if err != nil {
		t.Fatal(err)
	}
	starts := strings.Split(string(b), "\n {\n")
	if len(starts) < 5 {
		t.Fatalf("%s: want at least 4 questions", q)
	}
	cut := strings.Join(starts[:4], "\n {\n") + "\n {\n  \"id\": \"40" // inside the 4th question
	if err := os.WriteFile(q, []byte(cut), 0o644); err != nil {
		t.Fatal(err)
	}
	d := DataConfig{LaMPDir: lamp, Tasks: []TaskRef{"4"}, Scheme: "user", MaxExamples: 2}
	sources, err := dataSources(d)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := buildData(context.Background(), d, sources, dir); err != nil {
		t.Fatalf("max_examples 2: the data stage read past the second question: %v", err)
	}
	rd, err := loadData(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(rd.Tasks[0].Splits["train"]); got != 2 {
		t.Fatalf("%d training examples, want 2", got)
	}
}

// Ctrl-C stops the data stage (a LaMP-4/5 train file of ~1 GB takes a
// minute or more with max_examples 0): buildData returns the context's
// error instead of reading every file to the end.
func TestBuildDataStopsWhenInterrupted(t *testing.T) {
	d := DataConfig{LaMPDir: filepath.Join("..", "datasets", "testdata", "lamp_download"), Tasks: []TaskRef{"4"}, Scheme: "user"}
	sources, err := dataSources(d)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := buildData(ctx, d, sources, t.TempDir()); !errors.Is(err, context.Canceled) {
		t.Fatalf("buildData with Ctrl-C pressed: %v, want context.Canceled", err)
	}
}

// TestPromptsThatCannotFitFailAtStart: an example whose instruction and
// question alone exceed the predict stage's budget (retrieval.max_prompt_tokens)
// or an RL stage's (max_prompt_length) is refused before any stage runs,
// naming the key, an example and the budget that would do. The predict and
// RL stages failed on the first such prompt, hours into a run, and raising
// the budget then changed settings the earlier stages had stamped.
func TestPromptsThatCannotFitFailAtStart(t *testing.T) {
	for _, c := range []struct {
		edit func(*RunConfig)
		want string
	}{
		{func(c *RunConfig) { c.Retrieval.MaxPromptTokens = 12 }, "do not fit retrieval.max_prompt_tokens (the predict stage's prompts) 12 even without profile items"},
		{func(c *RunConfig) { c.Stages.RL[1].MaxPromptLength = 12 }, "do not fit stages.rl[1] (exploratory) max_prompt_length 12 even without profile items"},
		// A full budget must leave room for the completion (the policy has 512 positions).
		{func(c *RunConfig) { c.Retrieval.MaxPromptTokens = 500 }, "retrieval.max_prompt_tokens 500 + stages.predict.max_new_tokens 24 exceed the policy's 512 positions"},
		{func(c *RunConfig) { c.Stages.RL[0].MaxPromptLength = 500 }, "stages.rl[0] (guided) max_prompt_length 500 + max_completion_length 16 exceed the policy's 512 positions"},
	} {
		cfg := tinyRun(t.TempDir())
		c.edit(&cfg)
		r, err := openRun(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = r.prepare(context.Background())
		r.close()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("prepare: %v; want an error saying %q", err, c.want)
		}
	}
}

// A data.imports file whose rows are another split than the key it is
// given under (dev given as train, or a train file that import-lamp
// labelled dev by its old default) was read as that key's split: the run
// trained on its dev examples. Now refused naming the file and both splits.
func TestBuildDataRefusesAnImportOfAnotherSplit(t *testing.T) {
	lamp := filepath.Join("..", "datasets", "testdata", "lamp_download", "LaMP_3")
	task, err := datasets.ParseTask("3")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{}
	for _, split := range []string{"train", "dev"} {
		files[split] = filepath.Join(dir, split+".parquet")
		if _, err := datasets.ImportLaMP(datasets.ImportOptions{Task: task, Split: split, Scheme: "user", Out: files[split],
			Questions: filepath.Join(lamp, split, split+"_questions.json"), Outputs: filepath.Join(lamp, split, split+"_outputs.json")}); err != nil {
			t.Fatal(err)
		}
	}
	build := func(train, dev string) error {
		d := DataConfig{Scheme: "user", Imports: []DataImport{{Task: "3", Train: train, Dev: dev}}}
		sources, err := dataSources(d)
		if err != nil {
			return err
		}
		return buildData(context.Background(), d, sources, t.TempDir())
	}
	if err := build(files["train"], files["dev"]); err != nil {
		t.Fatalf("each file under its own split: %v", err)
	}
	err = build(files["dev"], files["train"])
	if err == nil || !strings.Contains(err.Error(), files["dev"]+" holds dev examples") || !strings.Contains(err.Error(), "gives it as train") {
		t.Fatalf("dev given as train: %v", err)
	}
}
