package pipeline

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/hf"
	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/rewardmodel"
)

// TestRunRefusesChangedPRMUEncoder: a run whose PRMU was trained with the
// encoder in stages.prmu.encoder.dir refuses to go on when another export
// (here: CLS pooling instead of mean) has taken that folder's place, naming
// the setting, instead of skipping the finished PRMU stage and scoring RL
// with the old encoder while the config names the new one.
func TestRunRefusesChangedPRMUEncoder(t *testing.T) {
	dir := t.TempDir()
	enc := filepath.Join(dir, "encoder")
	for _, f := range rewardmodel.EncoderFiles(encoderFixture) {
		b, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(enc, strings.TrimPrefix(f, encoderFixture+"/"))
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := tinyRun(filepath.Join(dir, "run"))
	cfg.Stages.PRMU.Encoder = &PRMUEncoderConfig{Dir: enc, Tuning: rewardmodel.TuneFrozen}
	ctx := context.Background()
	only := RunOptions{Only: []string{StagePRMU}}
	if _, err := Run(ctx, cfg, only); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, cfg, only); err != nil {
		t.Fatalf("the same encoder: %v", err)
	}
	pool := filepath.Join(enc, "1_Pooling", "config.json")
	if err := os.WriteFile(pool, []byte(`{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Run(ctx, cfg, only)
	if err == nil || !strings.Contains(err.Error(), "stages.prmu.encoder.files") {
		t.Fatalf("a run whose encoder folder holds another export: %v, want a refusal naming stages.prmu.encoder.files", err)
	}
}

// TestRunRefusesChangedLocalTeacher: chains made by the local teacher in
// teacher.dir are not reused once another model has been exported into that
// folder at the same size (here: one weight byte changed); the rerun is
// refused naming teacher.sha256. Before, the folder's path was all the
// stamp held of the teacher.
func TestRunRefusesChangedLocalTeacher(t *testing.T) {
	dir := t.TempDir()
	teacher := filepath.Join(dir, "teacher")
	if err := os.CopyFS(teacher, os.DirFS(filepath.Join("..", "onnx", "testdata", "pytorch", "qwen2-chat"))); err != nil {
		t.Fatal(err)
	}
	cfg := tinyRun(filepath.Join(dir, "run"))
	cfg.Teacher = TeacherConfig{Kind: TeacherLocal, Dir: teacher, Temperature: 1, MaxTokens: 8, Labeller: cfg.Teacher.Labeller}
	cfg.Stages.Chains.Samples = 1
	ctx := context.Background()
	only := RunOptions{Only: []string{StageChains}}
	if _, err := Run(ctx, cfg, only); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, cfg, only); err != nil {
		t.Fatalf("the same teacher: %v", err)
	}
	flipWeightBit(t, filepath.Join(teacher, "model.onnx"))
	_, err := Run(ctx, cfg, only)
	if err == nil || !strings.Contains(err.Error(), "teacher.sha256") {
		t.Fatalf("a run whose teacher folder holds another model: %v, want a refusal naming teacher.sha256", err)
	}
}

// TestRunImportsTeacherCheckpoint: teacher.dir may be a transformers
// checkpoint, as policy.dir may: the chains stage imports it into
// out/teacher once and its chains are those of the ONNX model the
// checkpoint was exported from; a changed checkpoint is refused by the
// finished chains' stamp (teacher.sha256) and, once the chains are
// removed, imported again. The import is removed once the chains are made
// unless stages.keep_checkpoints. Before, the run asked for an ONNX folder.
func TestRunImportsTeacherCheckpoint(t *testing.T) {
	dir := t.TempDir()
	onnxDir := filepath.Join("..", "onnx", "testdata", "pytorch", "qwen2-chat")
	m, err := ir.Load(filepath.Join(onnxDir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(dir, "ckpt")
	if _, err := hf.Export(m, ckpt, hf.ExportOptions{From: onnxDir}); err != nil {
		t.Fatal(err)
	}
	run := func(out, teacher string, keep bool) (map[string][]string, string) {
		t.Helper()
		cfg := tinyRun(filepath.Join(dir, out))
		cfg.Teacher = TeacherConfig{Kind: TeacherLocal, Dir: teacher, Temperature: 1, MaxTokens: 8, Labeller: cfg.Teacher.Labeller}
		cfg.Stages.Chains.Samples = 1
		cfg.Stages.KeepCheckpoints = keep
		log, err := runNotes(cfg, StageChains)
		if err != nil {
			t.Fatalf("teacher %s: %v\n%s", teacher, err, log)
		}
		chains := map[string][]string{}
		files, _ := filepath.Glob(filepath.Join(dir, out, "chains", "*.parquet"))
		for _, f := range files {
			rows, err := datasets.ReadChains(f, datasets.ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				chains[filepath.Base(f)] = append(chains[filepath.Base(f)], r.Chain)
			}
		}
		if len(chains) == 0 {
			t.Fatalf("teacher %s: no chains written", teacher)
		}
		return chains, log
	}
	fromCkpt, log := run("fromckpt", ckpt, false)
	if !strings.Contains(log, "imported the qwen2 checkpoint "+ckpt) {
		t.Errorf("the run does not say it imported the teacher checkpoint:\n%s", log)
	}
	// The import is a copy nothing reads once the chains are made.
	if exists(filepath.Join(dir, "fromckpt", "teacher")) || !strings.Contains(log, "the teacher's import") {
		t.Errorf("out/teacher is kept after the chains (stages.keep_checkpoints false):\n%s", log)
	}
	fromONNX, _ := run("fromonnx", onnxDir, false)
	if !reflect.DeepEqual(fromCkpt, fromONNX) {
		t.Errorf("chains of the imported checkpoint differ from the ONNX teacher's:\n%v\n%v", fromCkpt, fromONNX)
	}
	if _, log := run("fromckpt", ckpt, false); strings.Contains(log, "imported the") {
		t.Errorf("the rerun imported the teacher again:\n%s", log)
	}
	if run("kept", ckpt, true); !exists(filepath.Join(dir, "kept", "teacher", "model.onnx")) {
		t.Errorf("out/teacher removed with stages.keep_checkpoints true")
	}

	// The policy's own checkpoint as the teacher is imported once, into out/base.
	self := tinyRun(filepath.Join(dir, "self"))
	self.Policy = PolicyConfig{Dir: ckpt}
	self.Tokenizer.Train = nil
	self.Teacher = TeacherConfig{Kind: TeacherLocal, Dir: ckpt, Temperature: 1, MaxTokens: 8, Labeller: self.Teacher.Labeller}
	self.Stages.Chains.Samples = 1
	selfLog, err := runNotes(self, StageChains)
	if err != nil {
		t.Fatalf("the policy's checkpoint as the teacher: %v\n%s", err, selfLog)
	}
	if n := strings.Count(selfLog, "imported the qwen2 checkpoint"); n != 1 || exists(filepath.Join(dir, "self", "teacher")) {
		t.Errorf("the policy's checkpoint as the teacher: imported %d times, out/teacher made: %v\n%s", n, exists(filepath.Join(dir, "self", "teacher")), selfLog)
	}

	// Another checkpoint in the same folder: the finished chains refuse it.
	cfg := tinyRun(filepath.Join(dir, "fromckpt"))
	cfg.Teacher = TeacherConfig{Kind: TeacherLocal, Dir: ckpt, Temperature: 1, MaxTokens: 8, Labeller: cfg.Teacher.Labeller}
	cfg.Stages.Chains.Samples = 1
	flipWeightBit(t, filepath.Join(ckpt, "model.safetensors"))
	_, err = Run(context.Background(), cfg, RunOptions{Only: []string{StageChains}})
	if err == nil || !strings.Contains(err.Error(), "teacher.sha256") {
		t.Fatalf("finished chains of another checkpoint: %v, want a refusal naming teacher.sha256", err)
	}
	// A kept import of the old checkpoint is replaced once the chains are
	// removed.
	if err := os.RemoveAll(filepath.Join(dir, "kept", "chains")); err != nil {
		t.Fatal(err)
	}
	if _, log := run("kept", ckpt, true); !strings.Contains(log, "importing it again") || !strings.Contains(log, "imported the qwen2 checkpoint") {
		t.Errorf("a changed checkpoint was not imported again:\n%s", log)
	}
}

// TestRunImportsEncoderCheckpoint: stages.prmu.encoder.dir may be a
// BERT-family transformers checkpoint: the PRMU stage imports it into
// out/encoder once and trains (with LoRA on the imported graph) as on the
// Optimum export of the same weights; a changed checkpoint is refused by
// the finished PRMU's stamp. Before, the run asked for an ONNX folder.
func TestRunImportsEncoderCheckpoint(t *testing.T) {
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "ckpt")
	if err := os.CopyFS(ckpt, os.DirFS(filepath.Join("..", "rewardmodel", "testdata", "encoder-hf"))); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	run := func(out, encoder string) (StageSummary, string) {
		t.Helper()
		cfg := tinyRun(filepath.Join(dir, out))
		cfg.Stages.PRMU.Encoder = &PRMUEncoderConfig{Dir: encoder, Tuning: rewardmodel.TuneLoRA, LoRARank: 2, LoRASteps: 2}
		log, err := runNotes(cfg, StagePRMU)
		if err != nil {
			t.Fatalf("encoder %s: %v\n%s", encoder, err, log)
		}
		var sum StageSummary
		if err := readJSON(filepath.Join(dir, out, "prmu", summaryFile), &sum); err != nil {
			t.Fatal(err)
		}
		return sum, log
	}
	fromCkpt, log := run("fromckpt", ckpt)
	if !strings.Contains(log, "imported the bert text encoder "+ckpt) {
		t.Errorf("the run does not say it imported the encoder checkpoint:\n%s", log)
	}
	if exists(filepath.Join(dir, "fromckpt", "encoder")) || !exists(filepath.Join(dir, "fromckpt", "prmu", "encoder", "model.onnx")) {
		t.Errorf("after PRMU: out/encoder kept (%v) or prmu/encoder missing", exists(filepath.Join(dir, "fromckpt", "encoder")))
	}
	fromONNX, _ := run("fromonnx", encoderFixture)
	for _, k := range []string{"loss", "dev_pair_accuracy"} {
		a, b := fromCkpt.Final[k], fromONNX.Final[k]
		t.Logf("%s: %v imported, %v Optimum export", k, a, b)
		if math.IsNaN(a) || math.Abs(a-b) > 1e-4*max(1, math.Abs(b)) {
			t.Errorf("%s: %v with the imported checkpoint, %v with the Optimum export of the same weights", k, a, b)
		}
	}
	if _, log := run("fromckpt", ckpt); strings.Contains(log, "imported the") {
		t.Errorf("the rerun imported the encoder again:\n%s", log)
	}
	// The LoRA phase past runtime.max_memory_gb is refused before any step,
	// naming the config's keys.
	small := tinyRun(filepath.Join(dir, "small"))
	small.Stages.PRMU.Encoder = &PRMUEncoderConfig{Dir: ckpt, Tuning: rewardmodel.TuneLoRA, LoRARank: 2, LoRASteps: 2}
	small.Runtime.MaxMemoryGB = 0.01
	if _, err := runNotes(small, StagePRMU); err == nil || !strings.Contains(err.Error(), "stages.prmu.pairs_per_step") ||
		!strings.Contains(err.Error(), "stages.prmu.encoder.tuning: frozen") {
		t.Errorf("an encoder LoRA phase past runtime.max_memory_gb: %v", err)
	}

	// A causal LM's checkpoint as the encoder is refused, naming both.
	qwen := filepath.Join(dir, "qwen")
	m, err := ir.Load(filepath.Join("..", "onnx", "testdata", "pytorch", "qwen2-chat", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hf.Export(m, qwen, hf.ExportOptions{From: filepath.Join("..", "onnx", "testdata", "pytorch", "qwen2-chat")}); err != nil {
		t.Fatal(err)
	}
	if _, err := runNotes(func() RunConfig {
		c := tinyRun(filepath.Join(dir, "wrongkind"))
		c.Stages.PRMU.Encoder = &PRMUEncoderConfig{Dir: qwen, Tuning: rewardmodel.TuneFrozen}
		return c
	}(), StagePRMU); err == nil || !strings.Contains(err.Error(), "holds a causal LM's checkpoint; stages.prmu.encoder.dir takes a text encoder") {
		t.Errorf("a causal LM's checkpoint as the PRMU encoder: %v", err)
	}

	// RoBERTa (positions from a CumSum over the ids) and MPNet (a
	// relative-position bias looked up per T×T) checkpoints train with
	// LoRA too.
	for _, kind := range []string{"roberta", "mpnet"} {
		ck, _ := filepath.Abs(filepath.Join("..", "rewardmodel", "testdata", "encoder-"+kind))
		if sum, log := run(kind, ck); !strings.Contains(log, "imported the "+kind+" text encoder") || !(sum.Final["loss"] > 0) {
			t.Errorf("a %s encoder checkpoint: loss %v\n%s", kind, sum.Final["loss"], log)
		}
	}
	flipWeightBit(t, filepath.Join(ckpt, "model.safetensors"))
	cfg := tinyRun(filepath.Join(dir, "fromckpt"))
	cfg.Stages.PRMU.Encoder = &PRMUEncoderConfig{Dir: ckpt, Tuning: rewardmodel.TuneLoRA, LoRARank: 2, LoRASteps: 2}
	_, err = Run(ctx, cfg, RunOptions{Only: []string{StagePRMU}})
	if err == nil || !strings.Contains(err.Error(), "stages.prmu.encoder.sha256") {
		t.Fatalf("a finished PRMU whose encoder checkpoint changed: %v, want a refusal naming stages.prmu.encoder.sha256", err)
	}
}

// flipWeightBit changes one weight's low bit near the end of the file: the
// same size, another model.
func flipWeightBit(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-64] ^= 1
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// runNotes runs the stage of cfg and returns the notes it gave, a line each.
func runNotes(cfg RunConfig, stage string) (string, error) {
	var log strings.Builder
	_, err := Run(context.Background(), cfg, RunOptions{Only: []string{stage}, Progress: func(p train.Progress) {
		if p.Note != "" {
			log.WriteString(p.Note + "\n")
		}
	}})
	return log.String(), err
}
