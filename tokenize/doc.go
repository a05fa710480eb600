// Package tokenize turns text into model ids and back: Hugging Face
// tokenizer.json files through github.com/sugarme/tokenizer (with corrected
// components where v0.3.0 is wrong), chat templates, tag tokens, batching with
// padding, truncation and masks, and a byte-level BPE trainer.
//
// It must not import onnx/, rewardmodel/ or pipeline/.
package tokenize
