// Package hf moves causal LMs between Hugging Face checkpoints and tagpr's
// ONNX models (and BERT, RoBERTa, XLM-RoBERTa or MPNet text encoders, one way), with no
// Python.
//
// Import reads a transformers checkpoint folder — config.json and the
// weights in safetensors (one file, or shards listed in
// model.safetensors.index.json; F32, F16 or BF16) — of a Llama, Mistral,
// Qwen2 or Qwen3 model and writes the model in the Optimum layout through
// onnx/lm's own graph builder, with config.json, generation_config.json and
// the tokenizer files beside it. The checkpoint is memory-mapped and each
// weight is converted (widened to float32, transposed where ONNX stores it
// [in, out]) and written out on its own, so the import needs about one
// copy of the weights in memory whatever the model's size; past 1 GiB the
// weights go to model.onnx.data. A model_type or config.json setting the
// builder cannot reproduce (scaled rotary positions, per-layer sliding
// windows, quantization…) is refused by name.
//
// Export goes the other way: from any causal LM in the Optimum layout whose
// weights lm.MapHFNames can name (Optimum exports, tagpr's built-ins and
// imports, trained models), it writes model.safetensors with the
// checkpoint's names and layouts (a tied lm head is left to the config's
// tie_word_embeddings, as transformers saves it), config.json,
// generation_config.json and the tokenizer files with the chat template, so
// transformers' from_pretrained loads the folder. ExportAdapters writes a
// LoRA run's adapters as PEFT does (adapter_model.safetensors,
// adapter_config.json) for PeftModel.from_pretrained.
//
// ImportEncoder does the same for a BERT-family text encoder (BERT,
// MiniLM, BGE, E5), a RoBERTa or an MPNet one (all-mpnet-base-v2): the graph `optimum-cli export onnx --task
// feature-extraction` writes, output last_hidden_state, with the tokenizer
// and sentence-transformers' pooling config, a PRMU encoder folder as is.
//
// It imports onnx/lm, onnx/ir, onnx/onnxpb, onnx/safetensors and onnx/train
// (for LoRA adapters) from tagpr.
package hf
