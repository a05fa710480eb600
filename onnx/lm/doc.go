// Package lm owns tagpr's causal language models in ONNX: the built-in model
// family (GPT-2 and Llama/Qwen style graphs, built with onnx/ir), model
// inspection and validation against the Optimum text-generation-with-past
// layout, and batched KV-cache generation over an onnx/ort session.
//
// The IO layout (SPEC "Model conventions"): inputs input_ids [B,T] int64,
// attention_mask [B,P+T] int64, optional position_ids [B,T] int64 and
// past_key_values.{i}.key|value [B,Hkv,P,D]; outputs logits [B,T,V] and
// present.{i}.key|value [B,Hkv,P+T,D]. A past of length 0 is the first step.
//
// Generation knows nothing of tokenizers: stop strings are checked through a
// caller-supplied detokenize callback. It imports only onnx/ort, onnx/ir,
// onnx/onnxpb and onnx/lock from tagpr.
package lm
