// Package pipeline runs the TagPR stages (chains → SFT → RL stages → eval →
// report): run state and resume. It is the only package that ties
// datasets/, tokenize/, onnx/ and rewardmodel/ together; nothing but cmd/
// imports it.
//
// An RL stage (RLStage, TrainRL, RLPipeline) is a run of the generic GRPO
// trainer in pipeline/grpo, which knows nothing of TagPR: the stage gives
// it the prompts, its reward as weights over named rewards (TagPRRewards:
// task, format, tag, prmu; the guided and exploratory presets), and keeps
// each step's completions as rollouts beside the checkpoints.
// docs/rl-step.md follows one step through both packages.
package pipeline
