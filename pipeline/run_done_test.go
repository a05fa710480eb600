package pipeline

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/train"
)

// TestFinishedStageSaysItIsDone: a stage command on a finished stage
// (tagpr chains, sft, prmu train, rl --stage NAME, predict) does no work
// and says so, naming its folder and how to redo it, instead of exiting
// without a word.
func TestFinishedStageSaysItIsDone(t *testing.T) {
	cfg := tinyRun(t.TempDir())
	ctx := context.Background()
	if _, err := Run(ctx, cfg, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	// Each rule baseline's answers are kept, one row per scored example.
	evals, _ := filepath.Glob(filepath.Join(cfg.Out, "eval", "*.json"))
	if len(evals) == 0 {
		t.Fatal("no eval files")
	}
	for _, f := range evals {
		var te TaskEval
		if err := readJSON(f, &te); err != nil {
			t.Fatal(err)
		}
		for _, rule := range []string{BaselineBlind, BaselineProfile, BaselineTeacher} {
			preds, err := datasets.ReadPredictions(filepath.Join(cfg.Out, "eval", "baselines", rule, strings.TrimSuffix(filepath.Base(f), ".json")+".parquet"), datasets.ReadOptions{})
			if err != nil || len(preds) != te.Examples || preds[0].Model != rule || !preds[0].HasGold {
				t.Errorf("%s's answers for %s: %d rows (%v), want the %d scored, named, with golds", rule, filepath.Base(f), len(preds), err, te.Examples)
			}
		}
	}
	// A finished training stage's checkpoints are gone (stages.keep_checkpoints
	// false); its step log stays, for the report.
	for _, d := range []string{"sft", filepath.Join("rl", "guided"), filepath.Join("rl", "exploratory")} {
		ck := filepath.Join(cfg.Out, d, "checkpoints")
		if old, _ := filepath.Glob(filepath.Join(ck, "step-*")); len(old) != 0 {
			t.Errorf("%s: checkpoints left after the stage finished: %v", d, old)
		}
		if logs, _ := filepath.Glob(filepath.Join(ck, "*_log.jsonl")); len(logs) != 1 {
			t.Errorf("%s: step logs %v; want the stage's one", d, logs)
		}
	}
	for _, c := range []struct{ stage, dir string }{
		{StageChains, "chains"}, {StageSFT, "sft"}, {StagePRMU, "prmu"},
		{StageRL + ":guided", filepath.Join("rl", "guided")}, {StageRL + ":exploratory", filepath.Join("rl", "exploratory")},
		{StagePredict, filepath.Join("predictions", "sft")},
	} {
		var mu sync.Mutex
		var notes []string
		_, err := Run(ctx, cfg, RunOptions{Only: []string{c.stage}, Progress: func(p train.Progress) {
			mu.Lock()
			defer mu.Unlock()
			if p.Note != "" {
				notes = append(notes, p.Note)
			}
		}})
		if err != nil {
			t.Fatalf("%s on a finished run: %v", c.stage, err)
		}
		want := "already done in " + filepath.Join(cfg.Out, c.dir) + ", so it is skipped; to redo it, delete that folder"
		if !strings.Contains(strings.Join(notes, "\n"), want) {
			t.Errorf("%s on a finished run noted %q; want a note saying %q", c.stage, notes, want)
		}
	}
}

// TestEvalAloneSaysTheReportStageRebuildsTheReport: the eval stage run
// alone (tagpr eval -c FILE) rebuilds eval/ and leaves metrics.json and
// the reports to the report stage, as docs/run.md says, and says so; the
// report stage then brings metrics.json to eval/'s figures.
func TestEvalAloneSaysTheReportStageRebuildsTheReport(t *testing.T) {
	cfg := tinyRun(t.TempDir())
	ctx := context.Background()
	if _, err := Run(ctx, cfg, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	resamples := func() int {
		t.Helper()
		var mf MetricsFile
		b, err := os.ReadFile(filepath.Join(cfg.Out, "metrics.json"))
		if err != nil || json.Unmarshal(b, &mf) != nil {
			t.Fatalf("metrics.json: %v", err)
		}
		return mf.Bootstrap.Resamples
	}
	cfg.Stages.Eval.Bootstrap = 200
	var notes []string
	if _, err := Run(ctx, cfg, RunOptions{Only: []string{StageEval}, Progress: func(p train.Progress) {
		if p.Note != "" {
			notes = append(notes, p.Note)
		}
	}}); err != nil {
		t.Fatal(err)
	}
	want := "metrics.json, report.md, report.html in " + cfg.Out + " are rebuilt from it by the report stage: run `tagpr report` with this config"
	if !strings.Contains(strings.Join(notes, "\n"), want) {
		t.Errorf("eval alone noted %q; want a note saying %q", notes, want)
	}
	if n := resamples(); n == 200 {
		t.Fatalf("eval alone rewrote metrics.json (docs/run.md: the report stage does)")
	}
	if _, err := Run(ctx, cfg, RunOptions{Only: []string{StageReport}}); err != nil {
		t.Fatal(err)
	}
	if n := resamples(); n != 200 {
		t.Errorf("after the report stage metrics.json has %d resamples; eval/ has 200", n)
	}
}

// TestStageAloneRefusedBeforeAnyWork: a stage run alone on an empty folder
// (tagpr eval, report, sft, predict, rl) is refused, naming the stage it
// reads, before the data, tokenizer and base model are built: it once built
// them all first. The RL stages run together (tagpr rl) need SFT, not each
// other.
func TestStageAloneRefusedBeforeAnyWork(t *testing.T) {
	for _, c := range []struct {
		only []string
		want string
	}{
		{[]string{StageEval}, "needs the predict stage's output"},
		{[]string{StageReport}, "needs the predict stage's output"},
		{[]string{StageSFT}, "needs the chains stage's output"},
		{[]string{StagePredict}, "needs the sft stage's output"},
		{[]string{StageRL + ":guided", StageRL + ":exploratory"}, "stage rl:guided needs the sft stage's output"},
	} {
		cfg := tinyRun(filepath.Join(t.TempDir(), "run"))
		_, err := Run(context.Background(), cfg, RunOptions{Only: c.only})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v on an empty folder: got %v, want %q", c.only, err, c.want)
		}
		if ents, _ := os.ReadDir(cfg.Out); len(ents) > 0 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("%v on an empty folder did work before refusing: %s holds %v", c.only, cfg.Out, names)
		}
	}
}

// An eval file of a split the config no longer lists (an earlier run's,
// with stages.predict.splits [dev, test]) stays out of the report: it was
// reported beside the fresh ones, in metrics.json and the mean improvement.
func TestReportLeavesOutSplitsNotEvaluated(t *testing.T) {
	cfg := tinyRun(t.TempDir())
	ctx := context.Background()
	if _, err := Run(ctx, cfg, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Stages.Predict.Splits; len(got) != 1 || got[0] != "dev" {
		t.Fatalf("tinyRun's splits are %v; the test wants [dev]", got)
	}
	evals, _ := filepath.Glob(filepath.Join(cfg.Out, "eval", "*_dev.json"))
	if len(evals) == 0 {
		t.Fatal("no dev eval file")
	}
	var te TaskEval
	b, err := os.ReadFile(evals[0])
	if err != nil || json.Unmarshal(b, &te) != nil {
		t.Fatalf("%s: %v", evals[0], err)
	}
	te.Split = "test"
	if err := writeJSON(strings.TrimSuffix(evals[0], "_dev.json")+"_test.json", te); err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctx, cfg, RunOptions{Only: []string{StageReport}})
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range rep.Tasks {
		if task.Split != "dev" {
			t.Errorf("the report lists %s on %s, a split stages.predict.splits does not name", task.Task, task.Split)
		}
	}
}

// A chains stage resumed after its teacher failed part way says how many
// examples already have their chains and asks only for the others (it said
// it asked for every chain again).
func TestResumedChainsSayWhatIsLeft(t *testing.T) {
	var hits atomic.Int32
	var failing atomic.Bool
	failing.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() && hits.Add(1) > 2 {
			http.Error(w, "quota exceeded", http.StatusBadRequest)
			return
		}
		chatReply(w, "<think>The user likes it.</think><answer>x</answer>")
	}))
	defer srv.Close()
	cfg := tinyRun(t.TempDir())
	cfg.Teacher.Kind, cfg.Teacher.BaseURL, cfg.Teacher.Model = TeacherOpenAI, srv.URL, "fake"
	cfg.Teacher.Timeout, cfg.Teacher.Concurrency, cfg.Teacher.MaxRetries = 10*time.Second, 1, 0
	cfg.Stages.Chains.Batch, cfg.Stages.Chains.Samples = 2, 1
	run := func() ([]string, error) {
		var mu sync.Mutex
		var notes []string
		_, err := Run(context.Background(), cfg, RunOptions{Only: []string{StageChains}, Progress: func(p train.Progress) {
			mu.Lock()
			defer mu.Unlock()
			if p.Note != "" {
				notes = append(notes, p.Note)
			}
		}})
		return notes, err
	}
	if _, err := run(); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("first run: %v; want the teacher's 400", err)
	}
	failing.Store(false)
	notes, err := run()
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(notes, "\n")
	if !strings.Contains(all, "2 of ") || !strings.Contains(all, "have their chains from before; asking") {
		t.Errorf("resumed chains noted %q; want how many examples have their chains and that only the others are asked for", notes)
	}
}

// A report made before every configured stage has run (the run interrupted,
// or stages run one at a time) says which are not in it: it listed the
// finished ones only and read as the whole recipe.
func TestReportNamesStagesNotFinished(t *testing.T) {
	cfg := tinyRun(t.TempDir())
	cfg.Stages.Predict.Models = []string{ModelBase, ModelSFT}
	rep, err := Run(context.Background(), cfg, RunOptions{Only: []string{StageChains, StageSFT, StagePRMU, StagePredict, StageEval, StageReport}})
	if err != nil {
		t.Fatal(err)
	}
	want := "configured stages this report does not cover: rl guided (not started), rl exploratory (not started);"
	if !slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.HasPrefix(n, want) }) {
		t.Errorf("notes %q; want one saying %q", rep.Notes, want)
	}
	md, err := os.ReadFile(filepath.Join(cfg.Out, "report.md"))
	if err != nil || !strings.Contains(string(md), want) {
		t.Errorf("report.md does not say %q (%v)", want, err)
	}
}
