package pipeline

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/internal/buildinfo"
	"github.com/tagpr/tagpr/onnx/hf"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/rewardmodel"
	"github.com/tagpr/tagpr/tokenize"
)

// summaryFile holds a finished stage's StageSummary (rl stages: RLSummary):
// the report is rebuilt from these, whatever ran in the last process.
const summaryFile = "summary.json"

// sftSequences are the kept chains of every task, each encoded as its
// example's prompt (within the prompt budget) followed by the chain as the
// assistant turn, cut to seqLen by dropping profile items, never the chain.
// Chains too long even without a profile are left out and counted. Each
// task's sequences appear as often as stages.sft.task_weights says (once
// by default).
func (r *runEnv) sftSequences() (seqs []Sequence, tooLong int, err error) {
	seqLen := r.cfg.Stages.SFT.SeqLen
	for _, td := range r.data.Tasks {
		repeats := r.cfg.Stages.SFT.TaskWeights.Repeats(td.Task.Name)
		if repeats == 0 {
			continue
		}
		first := len(seqs)
		rows, err := datasets.ReadChains(r.chainsFile(td.Task.Name), datasets.ReadOptions{})
		if err != nil {
			return nil, 0, fmt.Errorf("sft: %w", err)
		}
		byID := map[string]*datasets.Example{}
		exs := td.Splits["train"]
		for i := range exs {
			byID[exs[i].ID] = &exs[i]
		}
		for _, row := range rows {
			if !row.Keep {
				continue
			}
			ex, ok := byID[row.ID]
			if !ok {
				return nil, 0, fmt.Errorf("sft: chain for %s in %s, which is not a training example", row.ID, r.chainsFile(td.Task.Name))
			}
			s, err := EncodeChainSFT(r.tok, td.Task, ex, row.Chain, r.tx, r.prompt, seqLen)
			if errors.Is(err, tokenize.ErrPromptTooLong) {
				tooLong++
				continue
			}
			if err != nil {
				return nil, 0, err
			}
			seqs = append(seqs, s)
		}
		task := seqs[first:]
		var use ProfileUse
		for _, s := range task {
			use.Add(s.ProfileRetrieved, s.ProfileKept)
		}
		if n := use.Note(td.Task.Name+" SFT sequences", "stages.sft.seq_len", seqLen); n != "" {
			note(r.h, StageSFT, "%s", n)
		}
		for k := 1; k < repeats; k++ {
			seqs = append(seqs, task...)
		}
	}
	return seqs, tooLong, nil
}

// EncodeChainSFT encodes an example with chain as the assistant's answer,
// within maxLen tokens; profile items are dropped to fit, never the answer.
// PromptLen is where the assistant's tokens start.
func EncodeChainSFT(tok *tokenize.Tokenizer, task *datasets.Task, ex *datasets.Example, chain string, tx rewardmodel.Taxonomy, o PromptOptions, maxLen int) (Sequence, error) {
	p := Parts(task, ex, tx, o, true)
	p.Answer = chain
	enc, err := tok.EncodePrompt(p, tokenize.DefaultPromptLayout, maxLen)
	if err != nil {
		return Sequence{}, fmt.Errorf("encode %s for SFT: %w", ex.ID, err)
	}
	prompt := len(enc.IDs)
	for i, m := range enc.AssistantMask {
		if m {
			prompt = i
			break
		}
	}
	return Sequence{IDs: enc.IDs, PromptLen: prompt, ProfileKept: enc.ProfileKept, ProfileRetrieved: len(p.Profile)}, nil
}

// noKeptChain is SFT's error when the chains filter kept no chain of the
// tasks SFT trains on: how many were judged, where their verdicts are and
// which settings decide.
func (r *runEnv) noKeptChain() error {
	judged := 0
	var files []string
	for _, td := range r.data.Tasks {
		if r.cfg.Stages.SFT.TaskWeights.Repeats(td.Task.Name) == 0 {
			continue
		}
		path := r.chainsFile(td.Task.Name)
		rows, err := datasets.ReadChains(path, datasets.ReadOptions{})
		if err != nil {
			return fmt.Errorf("sft: %w", err)
		}
		judged += len(rows)
		files = append(files, path)
	}
	return fmt.Errorf("sft: no chain passed the chains filter: 0 of the %d chains judged were kept. Each chain's verdicts (%s, %s, %s, %s) are in %s; "+
		"loosen stages.chains.filter (min_reward, generation_min_reward, min_steps, max_steps, max_chars, keep_duplicates) or change the teacher, "+
		"then delete %s to redo the chains", judged, VerdictAnswer, VerdictTags, VerdictLength, VerdictDuplicate, strings.Join(files, ", "), r.dir("chains"))
}

// sft fine-tunes the base model on the kept chains and exports it to
// sft/ (model.onnx last: its presence marks the stage done).
func (r *runEnv) sft(ctx context.Context) error {
	dir := r.dir("sft")
	model := filepath.Join(dir, "model.onnx")
	if err := r.checkStamp(dir, StageSFT, r.sftSettings(), exists(model)); err != nil {
		return err
	}
	if exists(model) {
		r.noteDone(StageSFT, "the SFT stage", dir, true)
		return nil
	}
	seqs, tooLong, err := r.sftSequences()
	if err != nil {
		return err
	}
	if len(seqs) == 0 && tooLong == 0 {
		return r.noKeptChain()
	}
	if len(seqs) == 0 {
		return fmt.Errorf("sft: no kept chain fits seq_len %d (%d too long): see %s", r.cfg.Stages.SFT.SeqLen, tooLong, r.dir("chains"))
	}
	mp, err := lm.ResolveModelPath(r.base)
	if err != nil {
		return err
	}
	base, err := loadForTraining(mp)
	if err != nil {
		return err
	}
	cfg := r.cfg.Stages.SFT.SFTConfig
	cfg.Seed = r.cfg.stageSeed(cfg.Seed, seedSFT)
	cfg.Session = r.sess
	cfg.MaxMemoryGB = r.cfg.Runtime.MaxMemoryGB
	cfg.ConsumeModel = true                      // reloaded for the export below
	cfg.ExportBytes = 2 * train.ModelBytes(base) // model.onnx(.data) and model.safetensors
	left := ""
	if tooLong > 0 {
		left = fmt.Sprintf(" (%d chains longer than seq_len left out)", tooLong)
	}
	what := "every weight"
	if l := cfg.lora(cfg.Seed, ""); l != nil {
		what = fmt.Sprintf("LoRA adapters of rank %d (alpha %g)", l.Rank, l.Alpha)
	}
	note(r.h, StageSFT, "%d steps of %d×%d tokens on %d tagged chains%s, training %s", cfg.Steps, cfg.Batch, cfg.SeqLen, len(seqs), left, what)
	ckDir := filepath.Join(dir, "checkpoints")
	if err := recordMachine(ckDir, ort.Machine(cfg.Session)); err != nil {
		return err
	}
	res, err := TrainSFT(ctx, base, seqs, r.pad, cfg, ckDir, r.h)
	if err != nil {
		return err
	}
	if err := copyFile(filepath.Join(r.base, "config.json"), filepath.Join(dir, "config.json")); err != nil {
		return err
	}
	sum, err := logSummary(StageSFT, filepath.Join(ckDir, train.LogFile))
	if err != nil {
		return err
	}
	sum.Final["sequences"] = float64(len(seqs))
	runs, err := stageHistory(ckDir, sum.Steps)
	if err != nil {
		return err
	}
	sum.Machine, sum.ResumedAfter, sum.Started = runs.Machine, runs.ResumedAfter, runs.Started
	sum.Finished = time.Now().UTC().Format(time.RFC3339)
	sum.Tagpr = buildinfo.String()
	if err := writeJSON(filepath.Join(dir, summaryFile), sum); err != nil {
		return err
	}
	// model.onnx comes last (with the transformers checkpoint and the
	// tokenizer files before it): its presence marks the stage done. The
	// training graph consumed base: the export writes into a fresh copy.
	base = nil
	if base, err = loadForTraining(mp); err != nil {
		return err
	}
	if _, err := hf.WriteTrained(model, base, res.Weights, res.Adapters, r.base); err != nil {
		return err
	}
	if r.cfg.Stages.KeepCheckpoints {
		return nil
	}
	return train.RemoveCheckpoints(ckDir)
}

// logSummary sums up a training log (train_log.jsonl): steps, time and the
// last step's loss.
func logSummary(stage, path string) (StageSummary, error) {
	s := StageSummary{Name: stage, Final: map[string]float64{}}
	f, err := os.Open(path)
	if err != nil {
		return s, fmt.Errorf("%s: %w", stage, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l train.StepLog
		if len(sc.Bytes()) == 0 {
			continue
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return s, fmt.Errorf("%s: %s: %w", stage, path, err)
		}
		s.Steps = l.Step
		s.Seconds += l.Seconds
		if !l.Skipped {
			s.Final["loss"] = l.Loss
		}
	}
	return s, sc.Err()
}

// writeJSON writes v as indented JSON, atomically.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := renameio.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readJSON reads path into v, refusing unknown fields.
func readJSON(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}
