package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/rewardmodel"
	"github.com/tagpr/tagpr/tokenize"
)

// rlStages are the configured RL stages that lead to name (RLChain), with
// their seeds derived from the run's where left at 0.
func (r *runEnv) rlStages(name string) []RLStage {
	all := make([]RLStage, len(r.cfg.Stages.RL))
	for i, st := range r.cfg.Stages.RL {
		st.Seed = r.cfg.stageSeed(st.Seed, seedRL+uint64(i))
		all[i] = st
	}
	return RLChain(all, name)
}

// rl runs RL stage name (earlier stages, when finished, are skipped) from
// the SFT model on every task's training prompts, in rl/NAME.
func (r *runEnv) rl(ctx context.Context, name string) error {
	dir := r.dir("rl", name)
	if err := r.checkStamp(dir, StageRL+":"+name, r.rlSettings(name), exists(dir+"/model.onnx")); err != nil {
		return err
	}
	if exists(dir + "/model.onnx") {
		if err := r.checkRLFrom(name); err != nil {
			return err
		}
		r.noteDone(StageRL, "RL stage "+name, dir, true)
		return nil
	}
	prmu, err := r.loadPRMU()
	if err != nil {
		return err
	}
	start := r.base
	if !r.cfg.Stages.SFT.Skip {
		start = r.dir("sft")
	}
	stages := r.rlStages(name)
	p := &RLPipeline{Stages: stages, Start: start, Dir: r.dir("rl"), EOS: r.eos, Pad: r.pad, Session: r.sess, HalfRollouts: r.cfg.Runtime.HalfGeneration(), MaxMemoryGB: r.cfg.Runtime.MaxMemoryGB,
		KeepCheckpoints: r.cfg.Stages.KeepCheckpoints,
		Detokenize:      func(ids []int64) (string, error) { return r.tok.DecodeCompletion(ids) },
		Prompts: func(st RLStage) ([]RLPrompt, error) {
			o := r.prompt
			o.MaxTokens = st.MaxPromptLength
			var out []RLPrompt
			for _, td := range r.data.Tasks {
				var task []RLPrompt
				var use ProfileUse
				exs := td.Splits["train"]
				for i := range exs {
					if !exs[i].HasOutput {
						continue // rewards compare with the gold
					}
					p, err := EncodeRLPrompt(r.tok, td.Task, &exs[i], r.tx, o)
					if err != nil {
						return nil, err
					}
					task = append(task, p)
					use.Add(len(p.Profile), p.ProfileKept)
				}
				if n := use.Note(td.Task.Name+" prompts", "stages.rl."+st.Name+".max_prompt_length", o.MaxTokens); n != "" {
					note(r.h, StageRL, "%s", n)
				}
				for range st.TaskWeights.Repeats(td.Task.Name) {
					out = append(out, task...)
				}
			}
			return out, nil
		},
		Rewards:  func(RLStage) (Rewards, error) { return TagPRRewards(r.tx, prmu), nil },
		Progress: r.h,
	}
	note(r.h, StageRL, "stage %s in %s", name, dir)
	_, err = p.Run(ctx)
	return err
}

// EncodeRLPrompt encodes an example as an RL prompt (generation prompt
// within o.MaxTokens) with its gold and profile texts for the rewards.
func EncodeRLPrompt(tok *tokenize.Tokenizer, task *datasets.Task, ex *datasets.Example, tx rewardmodel.Taxonomy, o PromptOptions) (RLPrompt, error) {
	parts := Parts(task, ex, tx, o, false)
	enc, err := tok.EncodePrompt(parts, tokenize.DefaultPromptLayout, o.MaxTokens)
	if err != nil {
		if errors.Is(err, tokenize.ErrPromptTooLong) {
			return RLPrompt{}, fmt.Errorf("encode %s for RL: %w (the budget is the RL stage's max_prompt_length; the instruction and the question are never cut)", ex.ID, err)
		}
		return RLPrompt{}, fmt.Errorf("encode %s for RL: %w", ex.ID, err)
	}
	return RLPrompt{ID: ex.ID, IDs: enc.IDs, Kind: RewardKind(task), Gold: ex.Output, Profile: parts.Profile, ProfileKept: enc.ProfileKept}, nil
}

func stageNames(st []RLStage) []string {
	out := make([]string, len(st))
	for i, s := range st {
		out[i] = s.Name
	}
	return out
}

// rlNote is a stage's reward curve and time split for the report.
func rlNote(s RLSummary) string {
	curve := make([]string, len(s.Curve))
	for i, v := range s.Curve {
		curve[i] = fmt.Sprintf("%.3f", v)
	}
	t := s.Time
	spans := "equal spans"
	if len(s.Curve) == 1 {
		spans = "span"
	}
	note := fmt.Sprintf("rl %s (%s): mean training reward over the stage's steps, in %d %s: %s; time: generate %.0fs, score %.0fs, reference %.0fs, forward-backward %.0fs, optimizer %.0fs",
		s.Stage, s.Scorer, len(s.Curve), spans, strings.Join(curve, " → "), t.Generate, t.Score, t.Reference, t.ForwardBackward, t.Optimizer)
	if c := s.contributionNote(); c != "" {
		note += "; " + c
	}
	return note
}
