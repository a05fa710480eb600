// Package lm owns tagpr's causal language models in ONNX: the built-in model
// family, model inspection and validation, and batched KV-cache generation
// over an onnx/ort session.
//
// # Layout
//
// Every model follows the Optimum text-generation-with-past layout
// (docs/formats.md): inputs input_ids [B,T] int64, attention_mask
// [B,P+T] int64, optional position_ids [B,T] int64 and
// past_key_values.{i}.key|value [B,Hkv,P,D]; outputs logits [B,T,V] and
// present.{i}.key|value [B,Hkv,P+T,D]. A past of length 0 is the first
// step. ReadLayout checks a model against it and names the input or output
// and what was expected when it does not fit; Inspect reports a model file
// without running it (`tagpr model info`).
//
// # Built-in models
//
// Build / WriteModelDir make GPT-2 style (LayerNorm, tanh GELU, learned
// positions, multi-head attention) and Llama/Qwen style (RMSNorm, SwiGLU,
// rotary positions, grouped KV heads) graphs from a Config, with seeded
// weights as initializers, the causal and padding masks computed in the
// graph, and config.json / generation_config.json as Hugging Face writes
// them (`tagpr model init`). BuildFrom takes the weights from a
// WeightSource instead (onnx/hf's checkpoint import); with Hugging Face's
// weights the graphs reproduce transformers' logits (hf_equivalence_test.go;
// Llama, Mistral's sliding window, Qwen2's q/k/v biases, Qwen3's q/k norms). They use a
// small set of standard ops (MatMul, Add, Mul, Div, Pow, Sqrt, Tanh, Sigmoid,
// Softmax, LayerNormalization, ReduceMean, Gather, Reshape, Transpose,
// Concat, Slice, Unsqueeze, Where, Cast and the shape ops of the mask), so
// autodiff has few rules to know. Config.DType "float64" builds the same
// model in double precision for finite-difference checks.
//
// # Generation
//
// Model.Generate runs a left-padded batch: each prompt is prefilled once
// (its cache then copied to the rows of its NumGenerations group), then one
// session run per token. The cache lives in two Go buffer sets that ORT
// reads and writes in turn, so no cache tensor is copied by Go; finished
// sequences are dropped from the batch. Loading adds a logits_to_keep input
// to the graph (keep.go) so that only the last position is projected onto
// the vocabulary, and the decode head (headgraph.go): the per-token work
// over the vocabulary (row max, softmax, log-softmax) in ORT's vectorized
// kernels, computed in the model's own run behind If switches, so a step is
// one session run on one thread pool (two pools on the same cores took turns
// instead of working). The first token, and models too large to edit, use
// the same ops as a small second session (head.go). Both heads also sum the
// probabilities in blocks, so a sampled draw walks a few hundred block sums
// and one block (blockdraw.go) on the calling goroutine, and the row sum is
// the sum of the block sums (no pass over the row for it); the other picks
// are split over as many goroutines as the model has threads.
// Greedy or sampled (temperature, top-k, top-p; reproducible per seed and
// per (prompt, sample)), NumGenerations completions per prompt, stops on EOS
// ids, stop strings (through a caller's Detokenize: this package knows no
// tokenizer) and MaxNewTokens, each sequence on its own, and returns each
// token's log-probability under the model. Stats split wall time from the
// time inside session runs.
//
// # Devices
//
// With CUDA (or LoadOptions.DeviceResident) generation keeps the cache in
// device tensors through IO binding, rows regrouped and the attention mask
// grown on the device, and weights uploaded once (UploadWeights) are bound
// there for a trainer to update in place (generate_device.go): per step
// only ids, positions and logits cross. LoadOptions.Half runs the MatMuls
// over weights in float16, weights fed as inputs through float16 copies
// cast on the device from the trainer's float32 masters (half.go).
//
// # Graph edits
//
// WithTemperature makes the policy softmax(logits/τ) a model of its own (a
// Mul after the logits), so training, reference scoring and sampling all
// see the same distribution; keep.go adds logits_to_keep at load.
//
// # Hugging Face names
//
// MapHFNames names every weight of a causal LM by its transformers
// parameter (model.layers.0.self_attn.q_proj.weight) and layout from the
// graph's structure: the module from the name of the node that reads it
// (exporters name nodes /model/layers.0/self_attn/q_proj/MatMul, and the
// builder names its own the same way), the parameter from the op and input
// slot. An exporter's numbered initializers (onnx::MatMul_745) thus get
// their names; a head reading the embedding, or storing a copy of it, is a
// tie. NameWeights renames the initializers accordingly and folds copies
// into one tensor, so training, optimizer state and exports see one
// parameter per transformers parameter.
//
// # Continuous batching
//
// A Batcher serves many independent requests from one Model (`tagpr
// serve`): one goroutine runs decode steps over the batch of running
// sequences; a request submitted meanwhile is prefilled (with any others
// that arrived) and joins before the next step, a sequence that finishes
// leaves at once, and the cache buffers are reused by whoever comes next.
// Rows keep one common cache length, right-aligned by left padding: a
// longer joining prompt pads the running rows, and when the longest row
// leaves the common padding is dropped (relayout copies the cache into the
// idle ping-pong set). A request joins only when the batch could hold every
// row at its full length within the cache budget, so steps never allocate.
// Tokens stream to each request as they are picked, with the same greedy
// picks, samples per seed and log-probs as Generate gives the prompt alone;
// a request whose context ends leaves the batch at the next step.
//
// Weights a trainer owns are fed as inputs: LoadWithWeightInputs turns the
// chosen initializers into graph inputs bound to Go tensors; updating
// Weight.Data in place changes the next generation, with no copy or reload.
//
// lm imports only onnx/ort, onnx/ir, onnx/onnxpb and onnx/lock (to verify
// pinned model files as they load) from tagpr.
package lm
