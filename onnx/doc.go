// Package onnx is the root of everything ONNX in tagpr. Its subpackages:
//
//	onnx/lock     models.lock: pins and verification of every artifact
//	onnx/ort      the runtime: library discovery, environment, sessions, tensors
//	onnx/onnxpb   ModelProto and friends, generated from our own onnx.proto
//	onnx/ir       read, edit, build, validate and write ONNX graphs
//	onnx/safetensors  safetensors files: mapped reading, streamed writing
//	onnx/lm       causal-LM builder and KV-cache generation
//	onnx/train    training graphs: autodiff, losses, LoRA, optimizer, checkpoints
//	onnx/hf       Hugging Face checkpoints: import (no Python), export, PEFT adapters
//	onnx/probe    one fixed workload (logits, greedy ids, gradients, throughput) to compare providers
//
// Nothing under onnx/ knows of TagPR, tokenizers, datasets or rewards, and
// nothing under onnx/ imports a tagpr package outside onnx/.
package onnx
