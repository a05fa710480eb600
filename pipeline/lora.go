package pipeline

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/train"
)

// LoRASettings make an SFT or RL stage train low-rank adapters on the
// policy's linear layers instead of every weight (as train lm --lora-rank and
// TRL's peft_config): no full-weight gradients or AdamW moments, which is
// what lets a ~0.5B policy's RL fit a 24 GB machine. The stage still exports
// one merged model (the next stage starts from it), plus the adapters in
// PEFT's format in its adapter/ folder.
type LoRASettings struct {
	// Rank of the adapters; 0 trains every weight.
	Rank int `mapstructure:"lora_rank" json:"lora_rank,omitempty"`
	// Alpha scales the adapters' output by Alpha/Rank (0: 2 × Rank, as
	// train lm).
	Alpha float64 `mapstructure:"lora_alpha" json:"lora_alpha,omitempty"`
	// Targets choose the adapted modules (PEFT's target_modules: q_proj, a
	// glob, or re:EXPR); empty: every linear layer but the lm head.
	Targets []string `mapstructure:"lora_targets" json:"lora_targets,omitempty"`
}

// validate refuses a negative rank, a non-finite alpha, bad patterns, and
// alpha or targets without a rank (they would be ignored).
func (l LoRASettings) validate() error {
	switch {
	case l.Rank < 0:
		return fmt.Errorf("lora_rank %d: want ≥ 1 for LoRA, or 0 to train every weight", l.Rank)
	case math.IsNaN(l.Alpha) || math.IsInf(l.Alpha, 0) || l.Alpha < 0:
		return fmt.Errorf("lora_alpha %v: want a finite value ≥ 0 (0: 2 × lora_rank)", l.Alpha)
	case l.Rank == 0 && l.Alpha != 0:
		return fmt.Errorf("lora_alpha %v without lora_rank: set lora_rank (e.g. 16) for LoRA, or leave lora_alpha out", l.Alpha)
	case l.Rank == 0 && len(l.Targets) > 0:
		return fmt.Errorf("lora_targets %q without lora_rank: nothing would be adapted; set lora_rank (e.g. 16), or leave lora_targets out", l.Targets)
	}
	if err := train.ValidatePatterns(l.Targets); err != nil {
		return fmt.Errorf("lora_targets: %w", err)
	}
	return nil
}

// lora is the engine's LoRA config, seeded (the adapters' A start random),
// its errors naming key's lora_targets; nil when the stage trains every
// weight.
func (l LoRASettings) lora(seed uint64, key string) *train.LoRA {
	if l.Rank == 0 {
		return nil
	}
	alpha := l.Alpha
	if alpha == 0 {
		alpha = 2 * float64(l.Rank)
	}
	return &train.LoRA{Rank: l.Rank, Alpha: alpha, Targets: l.Targets, Seed: seed, TargetsKey: key + ".lora_targets"}
}

// withAlpha is l with the alpha a 0 stands for.
func (l LoRASettings) withAlpha() LoRASettings {
	if t := l.lora(0, ""); t != nil {
		l.Alpha = t.Alpha
	}
	return l
}

// loraNote tells a report's reader that a stage trained adapters, and where
// they are.
func loraNote(stage string, l *train.LoRA, dir string) string {
	targets := "every linear layer but the lm head"
	if len(l.Targets) > 0 {
		targets = strings.Join(l.Targets, ", ")
	}
	return fmt.Sprintf("%s trained LoRA adapters of rank %d (alpha %g) on %s, not every weight: its model is the merged one, the adapters are in %s/adapter/ (PEFT's format)",
		stage, l.Rank, l.Alpha, targets, dir)
}

// checkLoRATargets resolves the lora_targets of every LoRA stage not yet
// done on the policy before any stage runs: a pattern that selects no linear
// layer failed only when its stage built its graph, after the chains (the
// teacher's cost) and the stages before it. RL stages start from models
// with the policy's module names, so the policy answers for them too.
func (r *runEnv) checkLoRATargets() error {
	type stage struct {
		key  string
		l    LoRASettings
		done string // the stage's model: present when the stage is done
	}
	var todo []stage
	if sft := r.cfg.Stages.SFT; !sft.Skip && sft.Rank > 0 && len(sft.Targets) > 0 {
		todo = append(todo, stage{"stages.sft", sft.LoRASettings, r.dir("sft", "model.onnx")})
	}
	for _, st := range r.cfg.Stages.RL {
		if st.Rank > 0 && len(st.Targets) > 0 {
			todo = append(todo, stage{"stages.rl." + st.Name, st.LoRASettings, r.dir("rl", st.Name, "model.onnx")})
		}
	}
	todo = slices.DeleteFunc(todo, func(s stage) bool { return exists(s.done) })
	if len(todo) == 0 {
		return nil
	}
	mp, err := lm.ResolveModelPath(r.base)
	if err != nil {
		return err
	}
	m, err := loadForTraining(mp) // module names as the stages see them (Hugging Face's)
	if err != nil {
		return err
	}
	for _, s := range todo {
		if _, err := s.l.lora(0, s.key).Select(m); err != nil {
			return fmt.Errorf("%w (in %s)", err, mp)
		}
	}
	return nil
}

// dropUnsetLoRA removes a stage's LoRA keys from its settings stamp when it
// trains every weight: runs recorded before the keys existed resume as
// before.
func dropUnsetLoRA(s map[string]any, key string, l LoRASettings) {
	if l.Rank == 0 {
		delete(s, key+".lora_rank")
		delete(s, key+".lora_alpha")
		delete(s, key+".lora_targets")
	}
}
