// Package grpo trains a causal language model in ONNX with Group Relative
// Policy Optimization, the way TRL's GRPOTrainer does, on a stock ONNX
// Runtime: rewards are plain Go functions (Func) or a small interface
// (Reward), every knob carries TRL's GRPOConfig name (Config), and the
// loss and advantages are TRL's: checked against TRL 1.16's _compute_loss
// over 126 configurations (onnx/train's TestPolicyLossMatchesTRL) and its
// advantage computation (TestAdvantagesMatchTRL).
//
//	model, _ := lm.Build(lm.Config{Arch: lm.Llama, Layers: 2, DModel: 32, Heads: 4, KVHeads: 2, Vocab: 32, MaxPositions: 64})
//	short := grpo.Func("short", func(s grpo.Sample) float64 { return -float64(len(s.Tokens)) })
//	prompts := []grpo.Prompt{{ID: "a", IDs: []int64{5, 6, 7}}, {ID: "b", IDs: []int64{8, 9}}}
//	t, err := grpo.New(model, []grpo.Reward{short}, prompts, grpo.Config{
//		NumGenerations: 4, MaxCompletionLength: 8, Steps: 10, PromptsPerStep: 2,
//		LearningRate: 1e-3, Beta: 0.04, OutputDir: "out/grpo"}, grpo.Options{EOS: []int64{1}})
//	if err != nil { ... }
//	defer t.Close()
//	res, err := t.Train(ctx) // res.Weights: train.Export writes them as an ONNX model
//
// A step samples PromptsPerStep prompts, generates NumGenerations
// completions of each with the current weights (the generation session reads
// the trainer's weight tensors, so nothing is copied or re-exported), scores
// them (Σ RewardWeights·reward), turns the rewards into group advantages
// (ScaleRewards), and makes NumIterations clipped policy-gradient updates of
// one fixed-shape batch. With DynamicSamplingRounds (DAPO's dynamic
// sampling) groups whose rewards are all equal are replaced by groups of
// freshly drawn prompts before the update, so the batch carries signal; docs/rl-step.md follows one step from the command
// line to ONNX Runtime and back. Temperature τ makes the policy
// softmax(logits/τ) a graph of its own (lm.WithTemperature), so sampling,
// the reference and the trained log-probs agree.
//
// Config.LoRA trains low-rank adapters instead of every weight (TRL's
// peft_config): the frozen base is held once, shared by training, rollouts and
// the reference, and Result.Adapters says what to merge.
// Config.GradientCheckpointing recomputes activations in the backward pass.
//
// Runs checkpoint, resume bit for bit and log a JSONL line per step (TRL's
// metric names: reward, rewards/NAME/mean, kl, clip_ratio/region_mean…;
// and each weighted reward's share and learning signal,
// rewards/NAME/share and rewards/NAME/signal: Contribution) through
// onnx/train's Loop; Callbacks keep a caller's own per-step outputs
// in step with the checkpoints. New estimates the run's peak memory
// before its sessions open (Trainer.Memory: the training step, the
// rollouts' KV cache, the reference model), reports it through
// Options.Progress and refuses a run past Options.MemoryLimit.
//
// grpo knows nothing of TagPR (tags, PRMU, LaMP): pipeline composes its
// stages from it. It imports only onnx/lm, onnx/ort, onnx/onnxpb and
// onnx/train from tagpr.
package grpo
