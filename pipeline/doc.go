// Package pipeline runs the TagPR stages (chains → SFT → RL stages → eval →
// report): rollout batching, run state and resume. It is the only package
// that ties datasets/, tokenize/, onnx/ and rewardmodel/ together; nothing but
// cmd/ imports it.
package pipeline
