// Package rewardmodel owns the rewards: PRMU (build, train, score), the
// tag-constraint reward, task rewards and the composite reward.
//
// PRMU's text encoder is a bag of tokens over its own tokenizer, or a
// TextEncoder: a sentence encoder exported with `optimum-cli export onnx
// --task feature-extraction`, pooled in its graph (mean or CLS), frozen with
// an EmbeddingCache (text embeddings by text hash in an Arrow file stamped
// with the encoder's hash) or tuned with LoRA through onnx/train.
//
// It knows nothing of stages or run state and must not import pipeline/.
package rewardmodel
